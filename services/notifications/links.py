"""Answer links: signed, expiring tokens that let a person answer from an email.

A token names the tenant, the match, the person and the action (`respond` to a proposal,
`checkin:N`, `checkin:session-ID` or `closing` feedback) and when it expires, signed with
HMAC-SHA256 (itsdangerous). Keys rotate without breaking links in flight: LINK_SIGNING_KEYS is a
list, oldest first; the last signs, every one verifies. A token is a bearer credential for that
one answer only: it carries no personal data but ids, and works once (the answer is stored
under its tenant, match, person and action; see pages.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import urlencode

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "mentornet.answer-link.v1"  # a token signed for anything else never reads as one of these


@dataclass(frozen=True)
class Link:
    tenant_id: str
    match_id: str
    person_id: str
    action: str  # "respond" | "checkin:<n>" | "checkin:session-<id>" | "closing"
    expires_at: datetime

    @property
    def kind(self) -> Literal["respond", "checkin", "closing"]:
        """What the page asks: an answer to a proposal, or check-in or closing feedback."""
        kind = self.action.split(":", 1)[0]
        if kind not in ("respond", "checkin", "closing"):
            raise BadLink("forged", f"unknown action {self.action!r}")
        return kind  # type: ignore[return-value]


class BadLink(Exception):
    """Why a token is refused: `forged` (altered, garbled, or signed by no key we hold) or
    `expired`."""

    def __init__(self, code: Literal["forged", "expired"], detail: str) -> None:
        super().__init__(detail)
        self.code = code


class LinkSigner:
    def __init__(self, keys: Sequence[str]) -> None:
        """`keys`: oldest first; the last signs."""
        if not keys:
            raise ValueError("at least one link signing key is needed")
        self._serializer = URLSafeSerializer(
            list(keys), salt=SALT, signer_kwargs={"digest_method": hashlib.sha256}
        )

    def token(self, link: Link) -> str:
        expires = int(link.expires_at.timestamp())
        return str(
            self._serializer.dumps(
                [link.tenant_id, link.match_id, link.person_id, link.action, expires]
            )
        )

    def read(self, token: str, now: datetime | None = None) -> Link:
        """The link a token stands for; raises BadLink when forged or expired."""
        try:
            tenant, match, person, action, expires = self._serializer.loads(token)
            link = Link(
                str(tenant),
                str(match),
                str(person),
                str(action),
                datetime.fromtimestamp(expires, UTC),
            )
        except BadSignature as exc:
            raise BadLink("forged", "the link's signature does not match") from exc
        except (TypeError, ValueError, OverflowError) as exc:  # signed, yet not our shape
            raise BadLink("forged", "the link is not an answer link") from exc
        link.kind  # noqa: B018 - an unknown action is refused here too
        if (now or datetime.now(UTC)) >= link.expires_at:
            raise BadLink("expired", "the link has expired")
        return link

    def url(self, base_url: str, link: Link, **query: str) -> str:
        """The page's address for this link, e.g. https://mentoring.example.org/answer?t=..."""
        return f"{base_url.rstrip('/')}/answer?" + urlencode({"t": self.token(link), **query})

    def choices(self, base_url: str, link: Link, choices: Sequence[str]) -> dict[str, str]:
        """One address per choice (accept, decline), all with the same token: signed once."""
        page = f"{base_url.rstrip('/')}/answer?" + urlencode({"t": self.token(link)})
        return {choice: f"{page}&{urlencode({'choice': choice})}" for choice in choices}
