"""Webhook signatures: `X-Mentornet-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`.

Signing the timestamp with the body lets a receiver refuse replays of an old request; the
receiver recomputes the HMAC over the raw body bytes it received (see docs/notifications.md).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Mentornet-Signature"
TIMESTAMP_HEADER = "X-Mentornet-Timestamp"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True when `signature` is ours for this body and the timestamp is recent enough."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)
