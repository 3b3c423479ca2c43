"""Rendering: Jinja2 files `templates/<locale>/<kind>.{subject,txt,html}.j2`.

Only the `.html.j2` files are autoescaped: names and reasons come from other systems and must
never become markup in an email, while the plain-text part must show them as they are.
Templates are compiled once and cached by Jinja.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
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


class Templates:
    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self.env = Environment(
            loader=FileSystemLoader(root),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.locales = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))

    def locale_for(self, languages: list[str] | None) -> str:
        return choose_locale(languages, self.locales)

    def render(self, kind: str, locale: str, context: dict[str, Any]) -> Rendered:
        values = {**context, "locale": locale, "criteria": CRITERIA.get(locale, CRITERIA["en"])}
        subject = self.env.get_template(f"{locale}/{kind}.subject.j2").render(values)
        return Rendered(
            locale=locale,
            subject=_SPACES.sub(" ", subject).strip(),  # a subject is one header line
            text=self.env.get_template(f"{locale}/{kind}.txt.j2").render(values),
            html=self.env.get_template(f"{locale}/{kind}.html.j2").render(values),
        )

    def page(self, name: str, locale: str, context: dict[str, Any]) -> str:
        """A page of the answer site (pages.py): `templates/<locale>/answer-<name>.html.j2`."""
        values = {**context, "locale": locale}
        return self.env.get_template(f"{locale}/answer-{name}.html.j2").render(values)
