# syntax=docker/dockerfile:1
#
# One image for all three services (profiles, matching, notifications) and for the
# one-shot `mentornet topics create` / `mentornet migrate` provisioning.
# Why one image: the services share one codebase and one pyproject, so one build gives
# one version to test, scan and deploy; the services differ only by their command
# (`python -m services.<name>`), which docker-compose.yml and the Kubernetes manifests set.
#
#   docker build -t mentornet:dev .
#   docker run --rm mentornet:dev python -m services.matching

# Pinned to an exact patch release so rebuilds are reproducible; bump deliberately.
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---------------------------------------------------------------------------------------
# builder: install every dependency from wheels (--only-binary: no compiler needed, no
# surprise source builds) plus the project into a self-contained venv.
FROM ${PYTHON_IMAGE} AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that editing the code does not
# reinstall ortools & co: this layer is rebuilt only when the dependency list changes.
# Versions come from requirements.lock, the same the tests ran with.
COPY pyproject.toml requirements.lock ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --only-binary=:all: -c requirements.lock -r /tmp/requirements.txt

# Then the project itself, built from its source (not editable: the runtime stage
# gets the venv only, no source tree). The wheel holds what runs in production only: the
# contract, the runtime, the services and the operator CLI (pyproject.toml says which
# packages); the local stack, benchmarks and tests are not even copied.
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir --no-deps .

# ---------------------------------------------------------------------------------------
# runtime: the same base (the venv's python symlinks point into it), the venv, nothing else.
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8000 \
    # cohort matching spreads its blocks over the cores itself: one BLAS thread per process
    OPENBLAS_NUM_THREADS=1

# A fixed, numeric UID/GID so Kubernetes can verify runAsNonRoot and volumes can be
# chowned to a known id; no home directory and no login shell.
RUN groupadd --system --gid 10001 mentornet \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin mentornet

COPY --from=builder /opt/venv /opt/venv

# The code lives in the venv; the working directory only needs to exist.
WORKDIR /app
USER 10001:10001

EXPOSE 8000

# No HEALTHCHECK here: docker-compose.yml declares one per service (probing /healthz)
# and Kubernetes ignores it in favour of its probes; the one-shot provisioning container
# shares this image and has no HTTP server to probe.

CMD ["python", "-m", "services.profiles"]
