"""Ingress authenticity: a tenant given a signing key must sign its events.

The CloudEvents extension `signature` holds `sha256=<hex>`: the HMAC-SHA256, with the tenant's
key, of these lines joined by "\\n": id, source, type, time (exactly as sent), tenantid, and the
`data` as canonical JSON (keys sorted, no spaces, UTF-8). Any client can compute it (a signed event is refused as a possible replay when its `time` is older
than the receiver's window, seven days by default, or more than five minutes ahead):

    body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = "\\n".join([id, source, type, time, tenantid, body])
    signature = "sha256=" + hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

MAX_AGE = timedelta(days=7)  # the default freshness window of signed events
MAX_AHEAD = timedelta(minutes=5)  # clocks differ: a signed event may be this far in the future
FIELDS = ("id", "source", "type", "time", "tenantid")


def signing_text(envelope: Mapping[str, Any]) -> bytes:
    body = json.dumps(
        envelope.get("data"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return "\n".join([*(str(envelope.get(f, "")) for f in FIELDS), body]).encode()


def sign(envelope: Mapping[str, Any], key: bytes) -> str:
    return "sha256=" + hmac.new(key, signing_text(envelope), hashlib.sha256).hexdigest()


def is_signed_by(envelope: Mapping[str, Any], key: bytes) -> bool:
    given = envelope.get("signature")
    return isinstance(given, str) and hmac.compare_digest(given, sign(envelope, key))
