"""Read pocketsphinx's binary trie language model and write it as ARPA.

The format ("Trie Language Model", the ``*.lm.bin`` files of pocketsphinx 5)
is defined by its writer in the pocketsphinx sources, which this reader
follows: ``ngram_model_trie_write_bin`` (src/lm/ngram_model_trie.c),
``lm_trie_write_bin`` and ``lm_trie_alloc_ngram`` (src/lm/lm_trie.c),
``lm_trie_quant_write_bin`` (src/lm/lm_trie_quant.c) and the bit packing of
src/lm/bitarr.c. All integers and floats are little-endian:

* the 19 bytes ``Trie Language Model``, a uint8 order N, N uint32 counts;
* for N > 1, an int32 (always 1) and the quantisation tables: float32 arrays
  of 65536 centres, for each middle order a probability table then a backoff
  table, and last the probability table of order N;
* ``counts[0] + 1`` unigrams, each (float32 prob, float32 backoff, uint32
  index of its first child); the extra last one only ends the child ranges;
* the bit-packed arrays of orders 2 .. N, each ``((entries + 1) * bits + 7)
  // 8 + 8`` bytes. An entry is, from the lowest bit: the word id
  (``bits(counts[0])`` bits), for a middle order 32 bits of quantised values
  (backoff index in the low 16, probability index in the high 16) and the
  index of its first child (``bits(counts[n])`` bits); for order N a 16-bit
  probability index. Bit ``k`` of an array is bit ``k % 8`` of byte ``k // 8``;
* a uint32 byte count and the vocabulary: NUL-terminated words in id order.

The trie is reversed, as in KenLM: a unigram's children are the words that
come before it, so the entry reached by the path ``w3 -> w2 -> w1`` holds the
trigram ``w1 w2 w3``. Every n-gram's suffixes are therefore in the file; the
writer adds any it lacked with its backed-off probability and no backoff.

Scores are floats in the units of the writer's log base, which the file does
not record: sphinx's 1.0001 (``logmath_log10_to_log_float``), so log10 is
the stored value times ``log10(1.0001)``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LOG10_OF_BASE", "NGrams", "SphinxLM", "read_sphinx_lm", "restrict_vocabulary", "write_arpa"]

HEADER = b"Trie Language Model"
LOG10_OF_BASE = math.log10(1.0001)
_QUANT_BITS = 16  # both the probability and the backoff index
_QUANT_BINS = 1 << _QUANT_BITS
_MIDDLE_QUANT_BITS = 2 * _QUANT_BITS
_UNIGRAM = np.dtype([("prob", "<f4"), ("backoff", "<f4"), ("next", "<u4")])


@dataclass
class NGrams:
    """The n-grams of one order: word ids in text order, log10 probability and backoff."""

    words: np.ndarray  # (count, n) int32, oldest word first
    prob: np.ndarray  # (count,) float64, log10
    backoff: np.ndarray | None  # (count,) float64, log10; None for the highest order


@dataclass
class SphinxLM:
    vocab: list[str]
    grams: list[NGrams]  # grams[n - 1] holds the n-grams

    @property
    def order(self) -> int:
        return len(self.grams)


def _bits(max_value: int) -> int:
    """Bits that hold 0 .. max_value (pocketsphinx's ``bitarr_required_bits``)."""
    return int(max_value).bit_length()


def _array_bytes(entries: int, total_bits: int) -> int:
    # One extra entry ends the last child range; 8 spare bytes let a reader load 64 bits anywhere.
    return ((1 + entries) * total_bits + 7) // 8 + 8


def _field(mem: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The ``width``-bit little-endian fields that begin at bit offsets ``starts``."""
    byte = starts >> 3
    shift = (starts & 7).astype(np.uint64)
    nbytes = (width + 7 + 7) // 8  # a field plus its shift within the first byte
    value = np.zeros(len(starts), dtype=np.uint64)
    for j in range(nbytes):
        value |= mem[byte + j].astype(np.uint64) << np.uint64(8 * j)
    return ((value >> shift) & np.uint64((1 << width) - 1)).astype(np.int64)


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"{self.path} ends early: it is not a whole pocketsphinx trie LM")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def array(self, dtype: np.dtype | str, count: int) -> np.ndarray:
        dtype = np.dtype(dtype)
        return np.frombuffer(self.take(dtype.itemsize * count), dtype=dtype)


def read_sphinx_lm(path: Path, progress: Callable[[str], None] | None = None) -> SphinxLM:
    """Every n-gram of a pocketsphinx trie LM (``*.lm.bin``), with log10 scores.

    Raises ``ValueError`` when the file is not in that format or is cut short.
    """
    note = progress or (lambda _msg: None)
    r = _Reader(Path(path).read_bytes(), Path(path))
    if r.take(len(HEADER)) != HEADER:
        raise ValueError(f"{path} is not a pocketsphinx trie LM (no {HEADER.decode()!r} header)")
    (order,) = r.take(1)
    if not 1 <= order <= 5:  # pocketsphinx's NGRAM_MAX_ORDER
        raise ValueError(f"{path}: n-gram order {order} is out of range")
    counts = [int(c) for c in r.array("<u4", order)]
    quant_prob: list[np.ndarray] = []
    quant_backoff: list[np.ndarray] = []
    if order > 1:
        r.take(4)  # a former quantisation type, always 1
        for _ in range(order - 2):
            quant_prob.append(r.array("<f4", _QUANT_BINS))
            quant_backoff.append(r.array("<f4", _QUANT_BINS))
        quant_prob.append(r.array("<f4", _QUANT_BINS))
    unigrams = r.array(_UNIGRAM, counts[0] + 1)
    word_bits = _bits(counts[0])
    arrays: list[tuple[np.ndarray, int, int]] = []  # (bytes, bits per entry, bits of the child index)
    for n in range(2, order + 1):
        next_bits = _bits(counts[n]) if n < order else 0
        quant_bits = _MIDDLE_QUANT_BITS if n < order else _QUANT_BITS
        total = word_bits + quant_bits + next_bits
        arrays.append((r.array(np.uint8, _array_bytes(counts[n - 1], total)), total, next_bits))
    (size,) = struct.unpack("<I", r.take(4))
    vocab = [w.decode("utf-8", errors="replace") for w in r.take(size).split(b"\0")[:-1]]
    if len(vocab) != counts[0]:
        raise ValueError(f"{path}: {len(vocab)} words for {counts[0]} unigrams")

    grams = [NGrams(words=np.arange(counts[0], dtype=np.int32)[:, None],
                    prob=unigrams["prob"][:-1].astype(np.float64) * LOG10_OF_BASE,
                    backoff=unigrams["backoff"][:-1].astype(np.float64) * LOG10_OF_BASE if order > 1 else None)]
    note(f"read {counts[0]:,} unigrams")
    parent_next = unigrams["next"].astype(np.int64)  # child range of entry i: [next[i], next[i + 1])
    for n in range(2, order + 1):
        mem, total, next_bits = arrays[n - 2]
        # The header's count may exceed the entries in use (the writer's estimate of the n-grams it
        # must add); the end of the last child range of order n - 1 is the number written.
        count = int(parent_next[-1])
        if count > counts[n - 1]:
            raise ValueError(f"{path}: the {n - 1}-grams point at {count} {n}-grams, past its {counts[n - 1]}")
        starts = np.arange(count + 1, dtype=np.int64) * total
        word = _field(mem, starts[:-1], word_bits)
        if word.size and word.max() >= counts[0]:
            raise ValueError(f"{path}: a {n}-gram has word id {word.max()} past the vocabulary")
        # The parent of entry k: the entry whose child range holds k.
        parent = np.searchsorted(parent_next, np.arange(count), side="right") - 1
        words = np.concatenate([word[:, None].astype(np.int32), grams[-1].words[parent]], axis=1)
        if n < order:
            q = _field(mem, starts[:-1] + word_bits, _MIDDLE_QUANT_BITS)
            prob = quant_prob[n - 2][q >> _QUANT_BITS].astype(np.float64) * LOG10_OF_BASE
            backoff = quant_backoff[n - 2][q & (_QUANT_BINS - 1)].astype(np.float64) * LOG10_OF_BASE
            parent_next = _field(mem, starts + word_bits + _MIDDLE_QUANT_BITS, next_bits)
        else:
            q = _field(mem, starts[:-1] + word_bits, _QUANT_BITS)
            prob = quant_prob[-1][q].astype(np.float64) * LOG10_OF_BASE
            backoff = None
        grams.append(NGrams(words=words, prob=prob, backoff=backoff))
        note(f"read {count:,} {n}-grams")
    return SphinxLM(vocab=vocab, grams=grams)


def _rows(words: np.ndarray) -> np.ndarray:
    """One comparable value per row of word ids (for set membership)."""
    words = np.ascontiguousarray(words, dtype=np.int32)
    return words.view(f"V{4 * words.shape[1]}").ravel()


def restrict_vocabulary(lm: SphinxLM, keep: Callable[[str], bool]) -> SphinxLM:
    """``lm`` lower-cased, with only the words ``keep`` accepts, as a consistent back-off model.

    An n-gram stays when all its words stay and both its context (its first
    n - 1 words) and its suffix (its last n - 1 words) stay, so that every
    backoff weight and every back-off path the ARPA format needs is still
    there. The remaining probabilities are not renormalised: a back-off LM
    need not sum to one, and KenLM does not ask it to. When lower-casing makes
    two words one, the first in the vocabulary stays.
    """
    lowered = [w.lower() for w in lm.vocab]
    seen: set[str] = set()
    kept_word = np.zeros(len(lowered), dtype=bool)
    for i, w in enumerate(lowered):
        if w not in seen and keep(w):
            kept_word[i] = True
        seen.add(w)
    new_id = np.cumsum(kept_word) - 1
    vocab = [w for w, k in zip(lowered, kept_word) if k]
    grams: list[NGrams] = []
    for n, g in enumerate(lm.grams, start=1):
        mask = kept_word[g.words].all(axis=1)
        if n > 1:
            lower = _rows(grams[-1].words)
            mask &= np.isin(_rows(new_id[g.words[:, :-1]]), lower)
            mask &= np.isin(_rows(new_id[g.words[:, 1:]]), lower)
        grams.append(NGrams(words=new_id[g.words[mask]].astype(np.int32), prob=g.prob[mask],
                            backoff=None if g.backoff is None else g.backoff[mask]))
    return SphinxLM(vocab=vocab, grams=grams)


def write_arpa(lm: SphinxLM, path: Path, progress: Callable[[int], None] | None = None,
               chunk: int = 200_000) -> Path:
    """Write ``lm`` as an ARPA file; ``progress(k)`` is called after each k n-grams written."""
    vocab = np.array(lm.vocab, dtype=object)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\\data\\\n")
        for n, g in enumerate(lm.grams, start=1):
            f.write(f"ngram {n}={len(g.prob)}\n")
        for n, g in enumerate(lm.grams, start=1):
            f.write(f"\n\\{n}-grams:\n")
            for lo in range(0, len(g.prob), chunk):
                hi = min(lo + chunk, len(g.prob))
                text = vocab[g.words[lo:hi, 0]]
                for j in range(1, n):
                    text = text + " " + vocab[g.words[lo:hi, j]]
                probs = g.prob[lo:hi].tolist()
                if g.backoff is None:
                    f.writelines(f"{p:.6f}\t{t}\n" for p, t in zip(probs, text))
                else:
                    f.writelines(f"{p:.6f}\t{t}\t{b:.6f}\n" for p, t, b in zip(probs, text, g.backoff[lo:hi].tolist()))
                if progress:
                    progress(hi - lo)
        f.write("\n\\end\\\n")
    return path
