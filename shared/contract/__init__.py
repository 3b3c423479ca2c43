"""The public v1 contract: CloudEvents envelope, event payloads, topics, rejection reasons.

HR systems and analytics depend on these names; change them only by adding (see docs/contract.md).
"""

from shared.contract.envelope import CloudEvent, Rejected, decode_record
from shared.contract.events import EVENT_MODELS
from shared.contract.topics import TOPICS, Topic

__all__ = ["EVENT_MODELS", "TOPICS", "CloudEvent", "Rejected", "Topic", "decode_record"]
