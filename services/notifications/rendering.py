"""Rendering: Jinja2 files `templates/<locale>/<kind>.{subject,txt,html}.j2`.

Only the `.html.j2` files are autoescaped: names and reasons come from other systems and must
never become markup in an email, while the plain-text part must show them as they are.
Templates are compiled once, looked up once per (kind, locale) and never re-read: a deploy
changes them, and restarts the service. (Jinja's default checked each file's modification time
at every render: a stat call per template, three per message.)
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context

from services.notifications.domain import choose_locale
from services.notifications.reading import CRITERIA

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Rendered:
    locale: str
    subject: str
    text: str
    html: str


# How a moment reads (Babel patterns: month names in the reader's language).
_MOMENT = {"en": "d MMMM y 'at' HH:mm", "fr": "d MMMM y 'à' HH:mm"}


@lru_cache(maxsize=4096)  # Babel's formatting is slow, and a batch shares its few deadlines
def format_time(value: str | datetime, timezone: str | None = None, locale: str = "en") -> str:
    """A deadline in the reader's time zone and language, e.g. "3 March 2025 at 14:00
    (Europe/Paris)", "3 mars 2025 à 14:00 (Europe/Paris)"."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = "UTC"
    if timezone:
        try:
            moment = moment.astimezone(ZoneInfo(timezone))
            zone = timezone
        except (KeyError, ValueError):
            moment = moment.astimezone(ZoneInfo("UTC"))
    else:
        moment = moment.astimezone(ZoneInfo("UTC"))
    pattern = _MOMENT.get(locale, _MOMENT["en"])
    return (
        f"{format_datetime(moment, pattern, locale=locale if locale in _MOMENT else 'en')} ({zone})"
    )


@pass_context
def _when(context: Context, value: str | datetime, timezone: str | None = None) -> str:
    return format_time(value, timezone, context.get("locale", "en"))


class _Environment(Environment):
    """Each template's globals as one plain dict: Jinja's ChainMap over the environment's was
    copied key by key for every render, include and import (~3% of a delivery's CPU). Nothing
    changes the globals once templates are loaded."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


class Templates:
    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self.env = _Environment(
            loader=FileSystemLoader(root),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters["when"] = _when
        self.locales = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
        self._messages: dict[tuple[str, str], tuple[Template, Template, Template]] = {}

    def locale_for(self, languages: list[str] | None) -> str:
        return choose_locale(languages, self.locales)

    def render(self, kind: str, locale: str, context: dict[str, Any]) -> Rendered:
        values = {**context, "locale": locale, "criteria": CRITERIA.get(locale, CRITERIA["en"])}
        subject, text, html = self._message(kind, locale)
        return Rendered(
            locale=locale,
            subject=_SPACES.sub(" ", subject.render(values)).strip(),  # one header line
            text=text.render(values),
            html=html.render(values),
        )

    def _message(self, kind: str, locale: str) -> tuple[Template, Template, Template]:
        """The subject, text and HTML templates of a kind in a locale."""
        found = self._messages.get((kind, locale))
        if found is None:
            get = self.env.get_template
            found = self._messages[(kind, locale)] = (
                get(f"{locale}/{kind}.subject.j2"),
                get(f"{locale}/{kind}.txt.j2"),
                get(f"{locale}/{kind}.html.j2"),
            )
        return found

    def page(self, name: str, locale: str, context: dict[str, Any]) -> str:
        """A page of the answer site (pages.py): `templates/<locale>/answer-<name>.html.j2`."""
        values = {**context, "locale": locale}
        return self.env.get_template(f"{locale}/answer-{name}.html.j2").render(values)
