"""onnxruntime session factory for exported acoustic models (no torch).

Every setting the runtime needs travels in the ONNX metadata (written by
``models.train.export``) and is read into a typed ``operators.acoustic.AcousticSpec``;
the serving code never repeats those numbers.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from operators.acoustic import AcousticSpec
from stream.cache import cache_root
from stream.errors import ModelError

__all__ = ["ASSETS", "BUNDLED_ENCODER", "BUNDLED_HEAD", "SECOND_PASS_MODELS", "AcousticModel", "SessionOptions",
           "default_asr_dir", "default_model_path", "default_second_pass_dir", "load_acoustic", "open_session",
           "recogniser_tag"]

ASSETS = Path(__file__).resolve().parent / "assets"


def default_general_lm() -> Path:
    """The general-English LM folder that set-up builds (``callstream build-lm --general``)."""
    # The suffix names the recipe (3: pocketsphinx's trigrams, models.train.sphinx_lm): a cache built
    # by another recipe is not reused.
    return cache_root() / "lm-general-en-3"


@dataclass(frozen=True)
class SessionOptions:
    intra_op_threads: int = 1  # threads per session call; 0 lets onnxruntime decide
    provider: str = "auto"  # auto | cpu | cuda


def open_session(path: Path, options: SessionOptions, *, arena: bool = True) -> ort.InferenceSession:
    """An onnxruntime session with our threading and provider choice; ModelError if it cannot load.

    ``arena``: onnxruntime's CPU memory arena, which keeps every buffer it has grown to for the
    session's life. Off for graphs whose input shapes change at every call (see ``SecondPass``).
    """
    if not path.exists():
        raise ModelError(f"model file {path} does not exist")
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = arena
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        return ort.InferenceSession(str(path), so, providers=_providers(options.provider))
    except Exception as exc:  # onnxruntime raises its own unrelated exception types
        raise ModelError(f"cannot load {path}: {exc}") from None


class AcousticModel:
    """A loaded streaming acoustic model: one onnxruntime session plus its spec.

    The step's inputs are ``feats`` and the caches named in the spec; its outputs are
    ``log_probs`` and ``new_<cache>`` for each cache.
    """

    def __init__(self, path: Path, options: SessionOptions | None = None) -> None:
        path = Path(path)
        self.session = open_session(path, options or SessionOptions())
        self.path = path
        self.spec = AcousticSpec.from_metadata(dict(self.session.get_modelmeta().custom_metadata_map))
        inputs = {i.name: i for i in self.session.get_inputs()}
        missing = {"feats", *self.spec.cache_axes} - set(inputs)
        if missing:
            raise ModelError(f"{path} lacks the inputs {sorted(missing)}")
        self._shapes = {name: inputs[name].shape for name in self.spec.cache_axes}
        self._outputs = [o.name for o in self.session.get_outputs()]

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def init_cache(self) -> dict[str, np.ndarray]:
        """One new stream's caches, each without its batch axis."""
        out = {}
        for name, axis in self.spec.cache_axes.items():
            shape = [d for k, d in enumerate(self._shapes[name]) if k != axis]
            if not all(isinstance(d, int) for d in shape):
                raise ModelError(f"cache {name} has a dynamic shape {self._shapes[name]}; expected fixed sizes")
            dtype = np.int64 if name == "cache_len" else np.float32
            out[name] = np.full(shape, self.spec.cache_init.get(name, 0), dtype)
        return out

    def step(self, feats: np.ndarray, caches: list[dict[str, np.ndarray]]
             ) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        """One streaming step for B streams.

        feats float32 (B, T, mel) with T = subsampling * C + context_frames; ``caches`` one dict
        per stream as ``init_cache`` gives. Returns log-probs float32 (B, C, vocab) and each
        stream's new caches.
        """
        feed = {"feats": feats}
        for name, axis in self.spec.cache_axes.items():
            feed[name] = np.stack([c[name] for c in caches], axis=axis)
        out = dict(zip(self._outputs, self.session.run(None, feed)))
        new = [
            {name: np.take(out[f"new_{name}"], i, axis=axis) for name, axis in self.spec.cache_axes.items()}
            for i in range(len(caches))
        ]
        return out["log_probs"], new


def _providers(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "cuda" or (choice == "auto" and "CUDAExecutionProvider" in available):
        if "CUDAExecutionProvider" not in available:
            raise ModelError("the CUDA execution provider is not available (install the [gpu] extra)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


BUNDLED_HEAD = ASSETS / "ctc_head.pt"
BUNDLED_ENCODER = ASSETS / "stream_encoder.pt"  # Whisper tiny.en's encoder fine-tuned for chunks
# The exported graphs' interfaces (models.train.export_whisper): the streaming step's, the second
# pass's. Raise one with any change to its graphs' inputs, outputs or metadata: a cache built by
# older code must not be read by newer.
GRAPHS_VERSION = 3
SECOND_PASS_GRAPHS_VERSION = 4


def default_asr_dir() -> Path:
    """Where set-up builds the recogniser's ONNX graphs (``callstream build-asr``).

    The name carries a hash of the bundled head and encoder and ``GRAPHS_VERSION``, so a new
    bundle, or graphs with other inputs, are built anew.
    """
    h = hashlib.sha1()
    for path in (BUNDLED_HEAD, BUNDLED_ENCODER):
        h.update(path.read_bytes() if path.exists() else b"missing")
    digest = h.hexdigest()[:10]
    return cache_root() / f"asr-whisper-tiny-chunk-ctc-g{GRAPHS_VERSION}-{digest}"


# Whisper models the second pass can run (models.whisper_weights.whisper_dir); set-up builds the first.
SECOND_PASS_MODELS = ("base", "tiny.en")


def default_second_pass_dir(model: str = SECOND_PASS_MODELS[0]) -> Path:
    """Where ``callstream build-asr`` builds the second pass's graphs for a Whisper model."""
    if model not in SECOND_PASS_MODELS:
        raise ModelError(f"the second pass runs Whisper {' or '.join(SECOND_PASS_MODELS)}, not {model!r}")
    return cache_root() / f"second-pass-whisper-{model}-g{SECOND_PASS_GRAPHS_VERSION}"


def recogniser_tag(second_pass: str = SECOND_PASS_MODELS[0]) -> str:
    """The default recogniser's name: its streaming graphs' and its second pass's cache folders.

    Transcripts cached for training or measuring (spoken intent) are kept under it, so that a
    new bundle or second pass transcribes them anew instead of serving an older model's errors.
    """
    return f"{default_asr_dir().name}+{default_second_pass_dir(second_pass).name}"


def default_model_path(quantized: bool = True) -> Path:
    """The streaming step built at set-up, or ``CALLSTREAM_MODEL`` when set."""
    env = os.environ.get("CALLSTREAM_MODEL")
    if env:
        return Path(env)
    path = default_asr_dir() / ("acoustic.int8.onnx" if quantized else "acoustic.onnx")
    if not path.exists():
        raise ModelError(f"the acoustic model is not built in {path.parent}: run `make setup` (callstream build-asr)")
    return path


def load_acoustic(path: Path | None = None, options: SessionOptions | None = None) -> AcousticModel:
    return AcousticModel(path or default_model_path(), options)
