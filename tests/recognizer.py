"""Test shorthand: wire audio through the recogniser surface."""

from __future__ import annotations

from collections.abc import Iterable

from stream.events import Event, Final, StreamConfig
from stream.pipeline import Pipeline, StreamState


def feed(pipeline: Pipeline, state: StreamState, payload: bytes) -> list[Event]:
    """``payload`` in, then every event it makes ready."""
    pipeline.accept_bytes(state, payload)
    return pipeline.decode_streams([state])


def kafka_reference(pipeline: Pipeline, call_id: str, records: Iterable[tuple[bytes, bytes, list]]) -> list[Final]:
    """The finals of a call's Kafka records (key, value, headers; mu-law 8 kHz) through the
    recogniser in process, with no broker and no fault: what a worker must publish."""
    state = pipeline.create_stream(call_id, StreamConfig(sample_rate=8000, encoding="mulaw"))
    out: list[Event] = []
    for _, value, headers in records:
        h = dict(headers)
        if h.get("cs-finalize") == b"1":
            out += pipeline.finalize(state)
        elif h.get("cs-end") == b"1":
            out += pipeline.finish(state)
        else:
            out += feed(pipeline, state, value)
    return [e for e in out if isinstance(e, Final)]
