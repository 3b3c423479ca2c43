"""Webhook signatures, checked against an HMAC computed independently here."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.notifications.signature import sign, verify

pytestmark = pytest.mark.unit

SECRET = "s3cret"
BODY = '{"kind":"match-proposal","text":"héllo"}'.encode()


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, BODY) == f"sha256={expected}"


def test_verify_accepts_ours_and_rejects_tampering() -> None:
    signature = sign(SECRET, 1700000000, BODY)
    assert verify(SECRET, "1700000000", BODY, signature, now=1700000010)
    assert not verify(SECRET, "1700000000", BODY + b" ", signature, now=1700000010)
    assert not verify("other", "1700000000", BODY, signature, now=1700000010)
    assert not verify(SECRET, "1700000001", BODY, signature, now=1700000010)
    assert not verify(SECRET, "not-a-number", BODY, signature, now=1700000010)


def test_verify_refuses_old_timestamps() -> None:
    signature = sign(SECRET, 1700000000, BODY)
    assert not verify(SECRET, "1700000000", BODY, signature, now=1700000000 + 301)
