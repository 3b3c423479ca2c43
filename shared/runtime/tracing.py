"""OpenTelemetry traces from HR event to email, carried through Kafka.

Each event carries W3C trace context twice: as the CloudEvents distributed-tracing extension
`traceparent` (so it survives any copy of the event) and as the Kafka header `traceparent` (so
generic tools see it). A service continues the trace of every event it handles and stamps the
events it causes with its own span, so one trace links the HR system's registration, profiles,
matching, notifications and the SMTP delivery.

Tracing is off unless configured: `TRACES_FILE` writes spans as JSON lines (handy locally and in
tests), `OTEL_EXPORTER_OTLP_ENDPOINT` sends them to a collector when the OTLP exporter package is
installed. Off, every call here is a cheap no-op.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()
_enabled = False


class JsonLinesExporter(SpanExporter):
    """One JSON object per finished span, appended to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "service": span.resource.attributes.get("service.name"),
                            "trace_id": format(context.trace_id, "032x"),
                            "span_id": format(context.span_id, "016x"),
                            "parent_id": format(span.parent.span_id, "016x")
                            if span.parent
                            else None,
                            "start_unix_nano": span.start_time,
                            "end_unix_nano": span.end_time,
                            "attributes": dict(span.attributes or {}),
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS


def configure_tracing(service: str, traces_file: str | None = None) -> None:
    global _enabled
    provider = TracerProvider(resource=Resource.create({"service.name": f"mentornet-{service}"}))
    if traces_file:  # "{service}" in the path gives each service a file of its own
        path = traces_file.replace("{service}", service)
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
        _enabled = True
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            _enabled = True
        except ImportError:
            pass  # the OTLP exporter is an optional package
    if _enabled:
        trace.set_tracer_provider(provider)


def enabled() -> bool:
    return _enabled


def traceparent_of(
    headers: Sequence[tuple[str, bytes]] | None, extension: Any = None
) -> str | None:
    """The incoming trace context: the CloudEvents extension, else the Kafka header."""
    if isinstance(extension, str):
        return extension
    for name, value in headers or ():
        if name in ("traceparent", "ce_traceparent"):
            return value.decode("ascii", "replace")
    return None


class OpenSpans:
    """Spans for the events of one batch, open while the batch's transaction runs."""

    def __init__(self) -> None:
        self._spans: list[Any] = []

    def start(
        self, name: str, traceparent: str | None, service: str, **attributes: Any
    ) -> str | None:
        """Start a span continuing `traceparent`; returns the traceparent of the new span."""
        if not _enabled:
            return traceparent
        parent = (
            _propagator.extract({"traceparent": traceparent})
            if traceparent
            else otel_context.Context()
        )
        new = trace.get_tracer(f"mentornet.{service}").start_span(
            name, context=parent, attributes=attributes
        )
        self._spans.append(new)
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(new))
        return carrier.get("traceparent")

    def end(self, error: BaseException | None = None) -> None:
        for open_span in self._spans:
            if error is not None:
                open_span.record_exception(error)
                open_span.set_status(trace.Status(trace.StatusCode.ERROR))
            open_span.end()
        self._spans.clear()


@contextmanager
def span(
    name: str, traceparent: str | None, service: str, **attributes: Any
) -> Iterator[str | None]:
    """A span continuing `traceparent`; yields the traceparent to stamp on what it causes."""
    if not _enabled:
        yield traceparent
        return
    parent = (
        _propagator.extract({"traceparent": traceparent}) if traceparent else otel_context.Context()
    )
    tracer = trace.get_tracer(f"mentornet.{service}")
    with tracer.start_as_current_span(name, context=parent, attributes=attributes):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        yield carrier.get("traceparent")
