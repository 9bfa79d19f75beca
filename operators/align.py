"""CTC forced alignment: where the words of a given text lie in an utterance's CTC log-probs.

The second pass rewrites a final's text, and its words still need times and
confidences. The best CTC path that spells exactly that text (Viterbi over
the usual blank-interleaved states) gives each character its frames; a word
spans its characters' frames, and its confidence is the mean posterior of
those characters. Written in numpy because serving must not import torch
(``torchaudio.functional.forced_align`` does the same on tensors).
"""

from __future__ import annotations

import numpy as np

__all__ = ["align_words"]


def _viterbi(log_probs: np.ndarray, ids: list[int]) -> np.ndarray | None:
    """Frame -> index into ``ids`` of the character it emits (-1 for blank), or None if impossible."""
    t_len = log_probs.shape[0]
    states = np.zeros(2 * len(ids) + 1, np.int64)
    states[1::2] = ids
    s_len = states.size
    # A state may be skipped from s - 2 when it is a character differing from the one before it.
    skip = np.zeros(s_len, bool)
    skip[3::2] = states[3::2] != states[1:-2:2]
    score = np.full(s_len, -np.inf)
    score[:2] = log_probs[0, states[:2]]
    back = np.zeros((t_len, s_len), np.int8)  # 0: stay, 1: from s - 1, 2: from s - 2
    for t in range(1, t_len):
        prev1 = np.concatenate([[-np.inf], score[:-1]])
        prev2 = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        cand = np.stack([score, prev1, prev2])
        back[t] = cand.argmax(axis=0)
        score = cand.max(axis=0) + log_probs[t, states]
    end = s_len - 1 if score[-1] >= score[-2] else s_len - 2
    if not np.isfinite(score[end]):
        return None
    path = np.empty(t_len, np.int64)
    s = end
    for t in range(t_len - 1, -1, -1):
        path[t] = s
        s -= back[t, s]
    return np.where(path % 2 == 1, path // 2, -1)


def align_words(log_probs: np.ndarray, text: str, vocab: tuple[str, ...]
                ) -> list[tuple[int, int, float]] | None:
    """(start frame, end frame (exclusive), confidence) of each word of ``text``.

    log_probs: float32 (T, vocab) of the utterance, vocab[0] the blank. Returns None
    when the text has a character outside ``vocab`` or cannot fit in T frames.
    """
    index = {c: i for i, c in enumerate(vocab) if c}
    words = text.split()
    if not words or log_probs.shape[0] == 0:
        return None
    chars = " ".join(words)
    if any(c not in index for c in chars):
        return None
    path = _viterbi(log_probs, [index[c] for c in chars])
    if path is None:
        return None
    frames: list[list[int]] = [[] for _ in chars]
    for t, k in enumerate(path):
        if k >= 0:
            frames[k].append(t)
    out, pos = [], 0
    for word in words:
        span = range(pos, pos + len(word))
        first, last = frames[span[0]][0], frames[span[-1]][-1]
        probs = [np.exp(log_probs[frames[k][0], index[chars[k]]]) for k in span]
        out.append((first, last + 1, float(np.mean(probs))))
        pos += len(word) + 1
    return out
