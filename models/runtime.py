"""onnxruntime session factory for exported acoustic models (no torch).

Every setting the runtime needs travels in the ONNX metadata (written by
``models.export``) and is read here into a typed ``AcousticSpec``; the serving
code never repeats those numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from operators.features import FeatureConfig
from stream.errors import ModelError

__all__ = ["ASSETS", "AcousticModel", "AcousticSpec", "SessionOptions", "default_model_path", "load_acoustic"]

ASSETS = Path(__file__).resolve().parent / "assets"


def cache_root() -> Path:
    """Where set-up builds the models too large to commit (the sentence encoder, the general LM).

    ``$CALLSTREAM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/callstream``
    (``~/.cache/callstream``): outside the work tree, so fresh clones on one
    machine share it.
    """
    root = os.environ.get("CALLSTREAM_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "callstream"


def default_general_lm() -> Path:
    """The general-English LM folder that set-up builds (``callstream build-lm --general``)."""
    # The suffix names the recipe (3: pocketsphinx's trigrams, models.sphinx_lm): a cache built
    # by another recipe is not reused.
    return cache_root() / "lm-general-en-3"
FORMAT = "callstream-conformer-ctc-stream/1"


@dataclass(frozen=True)
class AcousticSpec:
    """What an exported streaming acoustic model expects and returns."""

    chunk_frames: int  # encoder frames per chunk
    left_frames: int  # encoder frames of attention cache
    subsampling: int  # feature frames per encoder frame
    context_frames: int  # extra feature frames each chunk needs (subsampling receptive field)
    num_layers: int
    d_model: int
    conv_cache: int  # depthwise kernel - 1
    vocab: tuple[str, ...]  # index 0 is the CTC blank ("")
    features: FeatureConfig
    quantized: bool

    @property
    def chunk_feature_frames(self) -> int:
        """Feature frames one full chunk consumes (the last ``context_frames`` are kept)."""
        return self.chunk_frames * self.subsampling + self.context_frames

    @property
    def frame_seconds(self) -> float:
        """Seconds of audio per encoder frame."""
        return self.subsampling * self.features.frame_shift_ms / 1000.0

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> "AcousticSpec":
        if meta.get("format") != FORMAT:
            raise ModelError(f"expected model format {FORMAT!r}, got {meta.get('format')!r}")
        try:
            return cls(
                chunk_frames=int(meta["chunk_frames"]),
                left_frames=int(meta["left_frames"]),
                subsampling=int(meta["subsampling"]),
                context_frames=int(meta["context_frames"]),
                num_layers=int(meta["num_layers"]),
                d_model=int(meta["d_model"]),
                conv_cache=int(meta["conv_cache"]),
                vocab=tuple(json.loads(meta["vocab"])),
                features=FeatureConfig.from_metadata(meta),
                quantized=meta.get("quantized") == "1",
            )
        except (KeyError, ValueError) as exc:
            raise ModelError(f"model metadata is incomplete or invalid: {exc!r}") from None


@dataclass(frozen=True)
class SessionOptions:
    intra_op_threads: int = 1  # threads per session call; 0 lets onnxruntime decide
    provider: str = "auto"  # auto | cpu | cuda


class AcousticModel:
    """A loaded streaming acoustic model: one onnxruntime session plus its spec."""

    def __init__(self, path: Path, options: SessionOptions | None = None) -> None:
        options = options or SessionOptions()
        path = Path(path)
        if not path.exists():
            raise ModelError(f"model file {path} does not exist")
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(path), so, providers=_providers(options.provider))
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise ModelError(f"cannot load {path}: {exc}") from None
        self.path = path
        self.spec = AcousticSpec.from_metadata(dict(self.session.get_modelmeta().custom_metadata_map))

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def init_cache(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.spec
        return (
            np.zeros((s.num_layers, batch, s.left_frames, s.d_model), np.float32),
            np.zeros((s.num_layers, batch, s.d_model, s.conv_cache), np.float32),
            np.zeros((batch,), np.int64),
        )

    def step(
        self, feats: np.ndarray, att_cache: np.ndarray, conv_cache: np.ndarray, cache_len: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One streaming step for B streams.

        feats float32 (B, T, mel) with T = 4 * C' + 3; caches as ``init_cache``.
        Returns log-probs float32 (B, C', vocab) and the new caches.
        """
        out = self.session.run(
            None, {"feats": feats, "att_cache": att_cache, "conv_cache": conv_cache, "cache_len": cache_len}
        )
        return out[0], out[1], out[2], out[3]


def _providers(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "cuda" or (choice == "auto" and "CUDAExecutionProvider" in available):
        if "CUDAExecutionProvider" not in available:
            raise ModelError("the CUDA execution provider is not available (install the [gpu] extra)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def default_model_path(quantized: bool = True) -> Path:
    """The bundled model, or ``CALLSTREAM_MODEL`` when set."""
    env = os.environ.get("CALLSTREAM_MODEL")
    if env:
        return Path(env)
    return ASSETS / ("acoustic.int8.onnx" if quantized else "acoustic.onnx")


def load_acoustic(path: Path | None = None, options: SessionOptions | None = None) -> AcousticModel:
    return AcousticModel(path or default_model_path(), options)
