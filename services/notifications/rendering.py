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

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from services.notifications.domain import choose_locale

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_SPACES = re.compile(r"\s+")

# Plain words for matching's criteria, per locale (the reason text comes from matching).
CRITERIA: dict[str, dict[str, str]] = {
    "en": {
        "topic_fit": "Topics",
        "languages": "Languages",
        "timezone": "Time zone",
        "seniority": "Experience",
        "department": "Department",
        "reputation": "Feedback from earlier mentees",
        "load": "Availability",
    },
    "fr": {
        "topic_fit": "Sujets",
        "languages": "Langues",
        "timezone": "Fuseau horaire",
        "seniority": "Expérience",
        "department": "Service",
        "reputation": "Avis des mentorés précédents",
        "load": "Disponibilité",
    },
}


@dataclass(frozen=True)
class Rendered:
    locale: str
    subject: str
    text: str
    html: str


def format_time(value: str | datetime, timezone: str | None = None) -> str:
    """A deadline in the reader's time zone, e.g. "2025-03-03 14:00 (Europe/Paris)"."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    zone = "UTC"
    if timezone:
        try:
            moment = moment.astimezone(ZoneInfo(timezone))
            zone = timezone
        except (KeyError, ValueError):
            moment = moment.astimezone(ZoneInfo("UTC"))
    return f"{moment:%Y-%m-%d %H:%M} ({zone})"


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
        self.env.filters["when"] = format_time
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
