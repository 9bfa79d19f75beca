"""Word and character error rates (no torch; used by training and ``eval-asr``).

A plain Levenshtein alignment: 20 lines do not justify another dependency.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ErrorCounter", "edit_distance"]


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Minimum substitutions + deletions + insertions turning ``ref`` into ``hyp``."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


class ErrorCounter:
    """Accumulates word and character errors over a corpus."""

    def __init__(self) -> None:
        self.word_errors = self.words = self.char_errors = self.chars = self.utterances = 0

    def add(self, ref: str, hyp: str) -> None:
        ref_w, hyp_w = ref.split(), hyp.split()
        self.word_errors += edit_distance(ref_w, hyp_w)
        self.words += len(ref_w)
        ref_c, hyp_c = " ".join(ref_w), " ".join(hyp_w)
        self.char_errors += edit_distance(ref_c, hyp_c)
        self.chars += len(ref_c)
        self.utterances += 1

    @property
    def wer(self) -> float:
        return self.word_errors / max(self.words, 1)

    @property
    def cer(self) -> float:
        return self.char_errors / max(self.chars, 1)
