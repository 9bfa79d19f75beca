"""Toxicity and profanity of transcripts.

Shared, read-only resource: ``ToxicityModel``, a TF-IDF + logistic
regression model exported to numpy by ``models.toxicity_train`` (optionally
combined with sentence-encoder embeddings), the phrase rules of
``operators.abuse_lexicon`` for abuse aimed at the listener, and the list of
words that captions mask. PII/PCI redaction lives in ``operators.redaction``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from operators.abuse_lexicon import abuse_categories
from stream.errors import ModelError

__all__ = ["DEFAULT_TOXICITY", "TOXICITY_FORMAT", "ToxicityModel", "text_features"]

TOXICITY_FORMAT = "callstream-toxicity-linear/1"
DEFAULT_TOXICITY = Path(__file__).resolve().parent.parent / "models" / "assets" / "toxicity_davidson.npz"

# ---------------------------------------------------------------------------
# Toxicity: TF-IDF (word 1-2 grams + character 2-4 grams) and a linear model
# ---------------------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9']+")


def text_features(text: str) -> tuple[list[str], list[str]]:
    """Word 1-2 grams and character 2-4 grams of ``text`` (lowercased), with repeats.

    Character n-grams are taken inside each word padded by one space on each
    side (scikit-learn's ``char_wb``); they keep misrecognised or creatively
    spelled words close to the real ones. Training and serving both use this
    function, so their features cannot drift apart.
    """
    words = _TOKEN.findall(text.lower())
    grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
    chars: list[str] = []
    for w in words:
        padded = f" {w} "
        for n in (2, 3, 4):
            chars.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams, chars


def _block(grams: Iterable[str], vocab: dict[str, int], idf: np.ndarray, weight: np.ndarray) -> float:
    """w . x for one l2-normalised, sublinear-tf TF-IDF block (sparse, in Python: ~30 features)."""
    counts: dict[int, int] = {}
    for g in grams:
        i = vocab.get(g)
        if i is not None:
            counts[i] = counts.get(i, 0) + 1
    if not counts:
        return 0.0
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
    x = tf * idf[idx]
    return float(x @ weight[idx]) / float(np.sqrt(x @ x))


@dataclass(frozen=True)
class ToxicityModel:
    """P(offensive or hateful | text) from a linear model on two TF-IDF blocks,
    and optionally a second one on the text's sentence embedding.

    ``word_idf``/``word_coef`` are float (V_w,), ``char_idf``/``char_coef``
    float (V_c,); the n-gram score is ``sigmoid(w_word . x_word + w_char . x_char + bias)``
    with each ``x`` l2-normalised, and the flag fires at ``threshold`` (tuned
    for F1 on a Davidson dev split). ``mask_words`` are the words captions
    mask when profanity masking is on.

    The n-grams learn the slurs and swearing that fill the training tweets and
    miss hate said in clean words ("those people are subhuman"). The intent
    encoder embeds every final anyway, so a logistic head on that embedding
    (``embedding_coef``, float (dim,), for encoder ``embedding_encoder``) gives
    a second opinion for the cost of a dot product: the score is then the
    larger of the two, flagged at ``combined_threshold``.

    Both learned from tweets, and miss most abuse a caller aims at an agent in
    clean words ("i know where you live"); a match of the phrase rules
    (``operators.abuse_lexicon``) makes the score 1.0, and ``categories``
    names what matched.
    """

    word_vocab: dict[str, int]
    word_idf: np.ndarray
    word_coef: np.ndarray
    char_vocab: dict[str, int]
    char_idf: np.ndarray
    char_coef: np.ndarray
    bias: float
    threshold: float
    mask_words: frozenset[str]
    name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    embedding_coef: np.ndarray | None = None
    embedding_bias: float = 0.0
    embedding_encoder: str = ""  # ``SentenceEncoder.name`` whose embeddings the head reads
    combined_threshold: float = 0.5

    def score(self, text: str, embedding: np.ndarray | None = None, *, rules: bool = True) -> float:
        """The n-gram probability, or the larger of it and the embedding head's when ``embedding`` is given;
        1.0 when ``rules`` and a phrase rule matches ``text``."""
        if rules and abuse_categories(text):
            return 1.0
        grams, chars = text_features(text)
        z = self.bias
        z += _block(grams, self.word_vocab, self.word_idf, self.word_coef)
        z += _block(chars, self.char_vocab, self.char_idf, self.char_coef)
        p = 1.0 / (1.0 + math.exp(-z))
        if embedding is not None and self.embedding_coef is not None:
            e = float(embedding @ self.embedding_coef) + self.embedding_bias
            p = max(p, 1.0 / (1.0 + math.exp(-e)))
        return p

    @staticmethod
    def categories(text: str) -> tuple[str, ...]:
        """The abuse categories (``operators.abuse_lexicon.CATEGORIES``) whose phrase rules match ``text``."""
        return abuse_categories(text)

    def uses_embeddings_of(self, encoder_name: str) -> bool:
        """Whether ``score`` takes embeddings from this encoder (the head was trained on its output)."""
        return self.embedding_coef is not None and encoder_name == self.embedding_encoder

    def threshold_for(self, embedding: np.ndarray | None) -> float:
        """The flag threshold of the score ``score(text, embedding)`` gives."""
        return self.combined_threshold if embedding is not None and self.embedding_coef is not None else self.threshold

    def profane(self, word: str) -> bool:
        """Whether captions mask ``word`` (case and surrounding punctuation ignored)."""
        return word.lower().strip(".,!?;:\"'") in self.mask_words

    def save(self, path: Path) -> None:
        header = {
            "format": TOXICITY_FORMAT,
            "word_vocab": sorted(self.word_vocab, key=self.word_vocab.__getitem__),
            "char_vocab": sorted(self.char_vocab, key=self.char_vocab.__getitem__),
            "bias": self.bias,
            "threshold": self.threshold,
            "mask_words": sorted(self.mask_words),
            "name": self.name,
            "metrics": self.metrics,
            "embedding_bias": self.embedding_bias,
            "embedding_encoder": self.embedding_encoder,
            "combined_threshold": self.combined_threshold,
        }
        extra = {} if self.embedding_coef is None else {"embedding_coef": self.embedding_coef.astype(np.float32)}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                word_idf=self.word_idf.astype(np.float32),
                word_coef=self.word_coef.astype(np.float32),
                char_idf=self.char_idf.astype(np.float32),
                char_coef=self.char_coef.astype(np.float32),
                **extra,
            )

    @classmethod
    def load(cls, path: Path | None = None) -> "ToxicityModel":
        src = path or DEFAULT_TOXICITY
        try:
            with np.load(src, allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes().decode())
                arrays = {k: z[k].astype(np.float64) for k in ("word_idf", "word_coef", "char_idf", "char_coef")}
                coef = z["embedding_coef"].astype(np.float32) if "embedding_coef" in z.files else None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot read toxicity model {src}: {exc}") from None
        if header.get("format") != TOXICITY_FORMAT:
            raise ModelError(f"expected toxicity format {TOXICITY_FORMAT!r}, got {header.get('format')!r}")
        return cls(
            word_vocab={g: i for i, g in enumerate(header["word_vocab"])},
            char_vocab={g: i for i, g in enumerate(header["char_vocab"])},
            bias=float(header["bias"]),
            threshold=float(header["threshold"]),
            mask_words=frozenset(header["mask_words"]),
            name=str(header["name"]),
            metrics={k: float(v) for k, v in header.get("metrics", {}).items()},
            embedding_coef=coef,
            embedding_bias=float(header.get("embedding_bias", 0.0)),
            embedding_encoder=str(header.get("embedding_encoder", "")),
            combined_threshold=float(header.get("combined_threshold", 0.5)),
            **arrays,
        )
