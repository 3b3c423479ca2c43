"""structlog configuration: one JSON object per line, event and correlation ids bound per message,
and personal data redacted before anything is written.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PERSONAL_KEYS = frozenset({"email", "display_name", "name", "reason_text", "to", "recipient_email"})
EMAIL = re.compile(r"[^@\s<>\"'(),;:]+@[^@\s<>\"'(),;:]+\.[A-Za-z]{2,}")


def redact_personal_data(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Never let a name or an email address reach a log line (GDPR: logs are kept and shipped)."""
    for key, value in list(event_dict.items()):
        if key in PERSONAL_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str) and "@" in value:
            event_dict[key] = EMAIL.sub("[email]", value)
    return event_dict


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and route the standard library (FastStream, aiokafka) through it."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream gives its loggers a coloured handler of its own unless one to stdout exists.
    for name in ("faststream", "faststream.access.kafka"):
        framework = logging.getLogger(name)
        framework.handlers[:] = [handler]
        framework.propagate = False
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)  # its DEBUG traces carry headers


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
