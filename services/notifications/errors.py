"""How a send can fail, as far as retrying is concerned."""

from __future__ import annotations


class DeliveryError(Exception):
    """A send failed. `retry_after` is a delay the server asked for (HTTP Retry-After)."""

    permanent = False

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(DeliveryError):
    """Worth another try later: timeouts, refused connections, 4xx SMTP replies, HTTP 5xx."""


class PermanentError(DeliveryError):
    """Trying again cannot help: SMTP 5xx for this recipient or message, HTTP 4xx (but 408 and
    429), or a channel configured without what it needs."""

    permanent = True
