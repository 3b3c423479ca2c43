"""`mentornet schemas export`: a JSON Schema per event and an AsyncAPI document per service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.registry import SERVICES
from shared.contract.events import EVENT_MODELS
from shared.contract.schemas import event_schema


def asyncapi_document(service: str) -> dict[str, Any]:
    """The service's AsyncAPI document, as FastStream builds it from its subscribers."""
    spec = SERVICES[service]
    app = spec.build(spec.settings())
    document: dict[str, Any] = app.schema.to_specification().to_jsonable()
    return document


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type in EVENT_MODELS:
        path = directory / f"{event_type}.schema.json"
        path.write_text(json.dumps(event_schema(event_type), indent=2) + "\n")
        written.append(path)
    for service in SERVICES:
        path = directory / f"asyncapi-{service}.json"
        path.write_text(json.dumps(asyncapi_document(service), indent=2) + "\n")
        written.append(path)
    return written
