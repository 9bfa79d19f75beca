"""Streaming acoustic operator: log-mel frames in, CTC log-probs out, per-stream caches.

The shared part is the onnxruntime session (``models.runtime.AcousticModel``);
each stream's caches live in its ``AcousticState``. ``feed_batch`` runs one
chunk of many streams in a single session call, which is where the
throughput of the server comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.runtime import AcousticModel, AcousticSpec

__all__ = ["AcousticOperator", "AcousticState"]


@dataclass
class AcousticState:
    """Per-stream caches and the features not yet consumed by a chunk."""

    pending: np.ndarray  # float32 (n, mel): feature frames waiting for a chunk
    att_cache: np.ndarray  # float32 (layers, left, d)
    conv_cache: np.ndarray  # float32 (layers, d, kernel - 1)
    cache_len: int = 0
    frames_out: int = 0  # encoder frames produced so far
    chunks: int = 0
    flushed: bool = False
    _buffered: list[np.ndarray] = field(default_factory=list)


class AcousticOperator:
    def __init__(self, model: AcousticModel) -> None:
        self.model = model
        self.spec: AcousticSpec = model.spec

    def new_state(self) -> AcousticState:
        a, c, _ = self.model.init_cache(1)
        return AcousticState(
            pending=np.zeros((0, self.spec.features.num_mel_bins), np.float32), att_cache=a[:, 0], conv_cache=c[:, 0]
        )

    def push(self, state: AcousticState, feats: np.ndarray) -> None:
        """Queue float32 feature frames of shape (n, mel)."""
        if feats.ndim != 2 or feats.shape[1] != self.spec.features.num_mel_bins:
            raise ValueError(f"expected features of shape (n, {self.spec.features.num_mel_bins}), got {feats.shape}")
        if state.flushed:
            raise ValueError("stream already flushed; open a new state")
        if feats.shape[0]:
            state._buffered.append(feats)

    def _gather(self, state: AcousticState) -> None:
        if state._buffered:
            state.pending = np.concatenate([state.pending, *state._buffered])
            state._buffered.clear()

    def reset_context(self, state: AcousticState, template: AcousticState) -> None:
        """Give ``state`` the left context (attention and convolution caches) of ``template``.

        Queued features stay. The arrays are shared, never written in place.
        """
        state.att_cache, state.conv_cache, state.cache_len = template.att_cache, template.conv_cache, template.cache_len

    def limit_context(self, state: AcousticState, frames: int) -> None:
        """Keep at most the last ``frames`` encoder frames of attention left context."""
        state.cache_len = min(state.cache_len, frames)

    def frames_to_chunk(self, state: AcousticState) -> int:
        """Feature frames still missing for the next whole chunk (0 when ``ready``)."""
        self._gather(state)
        return max(0, self.spec.chunk_feature_frames - state.pending.shape[0])

    def ready(self, state: AcousticState) -> bool:
        """True when a whole chunk is queued."""
        self._gather(state)
        return state.pending.shape[0] >= self.spec.chunk_feature_frames

    def feed_batch(self, states: Sequence[AcousticState]) -> list[np.ndarray]:
        """Run one full chunk for each of ``states`` (all must be ``ready``) in one call.

        Returns, per state, float32 log-probs of shape (chunk_frames, vocab).
        """
        if not states:
            return []
        n = self.spec.chunk_feature_frames
        for s in states:
            if not self.ready(s):
                raise ValueError("feed_batch needs states with a whole chunk queued; check ready() first")
        feats = np.stack([s.pending[:n] for s in states])
        return self._run(states, feats, advance=self.spec.chunk_frames * self.spec.subsampling)

    def feed(self, state: AcousticState, feats: np.ndarray) -> list[np.ndarray]:
        """Single-stream convenience: queue ``feats`` and run every whole chunk."""
        self.push(state, feats)
        out = []
        while self.ready(state):
            out.extend(self.feed_batch([state]))
        return out

    def flush(self, state: AcousticState) -> list[np.ndarray]:
        """End of stream: run the whole chunks left, then the short tail chunk if any."""
        out = []
        while self.ready(state):
            out.extend(self.feed_batch([state]))
        rest = state.pending.shape[0]
        if rest >= self.spec.subsampling + self.spec.context_frames:
            # The subsampling convolutions ignore the frames that fill no encoder frame.
            out.extend(self._run([state], state.pending[None], advance=rest))
        state.pending = state.pending[:0]
        state.flushed = True
        return out

    def run_partial(self, state: AcousticState) -> np.ndarray | None:
        """Run the queued features short of a chunk now, as a shorter chunk: float32 log-probs
        (n, vocab) of the ``n`` whole encoder frames they make, or None if they make none.

        For an endpoint decision mid-chunk. The frames after them stay queued, and later chunks
        start from there (the model was trained on random chunk sizes).
        """
        self._gather(state)
        sub, ctx = self.spec.subsampling, self.spec.context_frames
        n = (state.pending.shape[0] - ctx) // sub
        if n < 1:
            return None
        return self._run([state], state.pending[None, : n * sub + ctx], advance=n * sub)[0]

    def _run(self, states: Sequence[AcousticState], feats: np.ndarray, advance: int) -> list[np.ndarray]:
        att = np.stack([s.att_cache for s in states], axis=1)
        conv = np.stack([s.conv_cache for s in states], axis=1)
        lens = np.array([s.cache_len for s in states], np.int64)
        log_probs, att, conv, lens = self.model.step(np.ascontiguousarray(feats), att, conv, lens)
        for i, s in enumerate(states):
            s.att_cache, s.conv_cache, s.cache_len = att[:, i], conv[:, i], int(lens[i])
            s.pending = s.pending[advance:]
            s.frames_out += log_probs.shape[1]
            s.chunks += 1
        return [log_probs[i] for i in range(len(states))]
