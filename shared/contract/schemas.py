"""JSON Schema of every event: the CloudEvents envelope with its payload."""

from __future__ import annotations

from typing import Any

from shared.contract.envelope import CloudEvent
from shared.contract.events import EVENT_MODELS
from shared.contract.topics import TOPICS


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
