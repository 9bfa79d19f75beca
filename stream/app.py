"""Wiring: build the shared ``Pipeline`` from the bundled (or given) models."""

from __future__ import annotations

from pathlib import Path

from models.runtime import SessionOptions, load_acoustic
from operators.acoustic import AcousticOperator
from operators.ctc import EndpointConfig
from stream.pipeline import Pipeline

__all__ = ["build_pipeline"]


def build_pipeline(*, model: Path | None = None, threads: int = 1, endpoint: EndpointConfig | None = None) -> Pipeline:
    """The pipeline every transport serves. ``model``: an exported ONNX file (default: bundled int8)."""
    acoustic = AcousticOperator(load_acoustic(model, SessionOptions(intra_op_threads=threads)))
    return Pipeline(acoustic=acoustic, endpoint=endpoint)
