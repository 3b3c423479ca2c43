"""Topic names as people type them, made comparable: case, spacing, punctuation, synonyms."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s_\-/]+")

# Small and explicit on purpose: program managers can read and extend it.
SYNONYMS = {
    "ml": "machine learning",
    "ai": "artificial intelligence",
    "js": "javascript",
    "ts": "typescript",
    "k8s": "kubernetes",
    "ux": "user experience",
    "ui": "user interface",
    "pm": "product management",
    "people management": "management",
    "team management": "management",
    "leadership skills": "leadership",
    "presentation skills": "public speaking",
    "presenting": "public speaking",
    "prise de parole": "public speaking",
    "gestion de projet": "project management",
    "negotiating": "negotiation",
    "data analysis": "data analytics",
    "analytics": "data analytics",
}


def normalise_topic(name: str) -> str:
    """'  Public-Speaking ' and 'public speaking' are one topic; 'ML' is 'machine learning'."""
    key = _SEPARATORS.sub(" ", name.strip().lower()).strip(" .")
    return SYNONYMS.get(key, key)
