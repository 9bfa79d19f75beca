"""Test shorthand: one message of wire audio through the recogniser surface."""

from __future__ import annotations

from stream.events import Event
from stream.pipeline import Pipeline, StreamState


def feed(pipeline: Pipeline, state: StreamState, payload: bytes) -> list[Event]:
    """``payload`` in, then every event it makes ready."""
    pipeline.accept_bytes(state, payload)
    return pipeline.decode_streams([state])
