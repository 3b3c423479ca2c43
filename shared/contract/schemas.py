"""JSON Schema of every event (envelope + data) and an AsyncAPI document per service."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from shared.contract.envelope import CloudEvent
from shared.contract.events import EVENT_MODELS
from shared.contract.topics import TOPICS

SERVICES = ("profiles", "matching", "notifications")


def event_schema(event_type: str) -> dict[str, Any]:
    """The CloudEvents envelope with `type` fixed and `data` described by the payload model."""
    envelope = CloudEvent.model_json_schema()
    data = EVENT_MODELS[event_type].model_json_schema(ref_template="#/$defs/{model}")
    defs = {**envelope.pop("$defs", {}), **data.pop("$defs", {})}
    envelope["properties"]["type"] = {"const": event_type, "title": "Type"}
    envelope["properties"]["data"] = data
    envelope["required"] = sorted({*envelope.get("required", []), "data", "tenantid"})
    topic = TOPICS.get(event_type)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://mentornet.example/schemas/v1/{event_type}.json",
        "title": event_type,
        "description": topic.description if topic else "",
        "x-kafka-key": topic.key if topic else None,
        **envelope,
        **({"$defs": defs} if defs else {}),
    }


def asyncapi_document(service: str) -> dict[str, Any]:
    """The service's AsyncAPI document, as FastStream builds it from its subscribers."""
    entrypoint = importlib.import_module(f"services.{service}.entrypoint")
    app = entrypoint.build(entrypoint.Settings())
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
        try:
            document = asyncapi_document(service)
        except ModuleNotFoundError:  # a service not present in this checkout
            continue
        path = directory / f"asyncapi-{service}.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written
