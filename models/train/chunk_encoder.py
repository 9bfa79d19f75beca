"""Whisper's encoder run chunk by chunk with a key/value cache (U2-style chunk masks).

The windowed encoder (``models.train.stream_encoder``) re-encodes 1.28 s of left
context and 0.16 s of look-ahead around every 0.32 s chunk: 88 encoder frames
of work for 16 frames of output. ``ChunkedEncoder`` keeps every layer's keys and
values of the last ``LEFT`` frames instead, so a chunk costs its own frames
plus the look-ahead: 24.

One step sees what a window sees, with the same positions:

* the chunk's ``n`` frames at positions ``LEFT .. LEFT + n`` and ``LOOK``
  look-ahead frames after them, as the window places them;
* the cached keys and values of up to ``LEFT`` earlier frames, each computed
  when its own chunk ran (so with that chunk's positions and look-ahead);
* the chunk's log-mel frames normalised as Whisper normalises its input
  (clamp at the maximum minus 8, then ``(x + 4) / 4``), the maximum taken
  over the window's frames: ``LEFT_MEL`` cached log-mel frames, the chunk and
  its look-ahead.

Only the chunk's frames enter the cache. The look-ahead frames are computed
again, as chunk frames, by the next step. Positions restart in every step, so
a stream may run for any length (no 30 s limit and nothing to reset).

Whisper never saw cached keys or lonely look-ahead frames, so its weights are
fine-tuned to this schedule by distillation from the windowed encoder
(``models.train.distil_encoder``). ``forward`` computes a whole utterance under
the same schedule in one pass (training; the reference of the parity test):
the sequence holds every frame once as a chunk frame and once more as its
chunk's look-ahead, and a mask gives each query exactly the keys its step has.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.train.stream_encoder import CHUNK_MEL, LEFT_MEL, LOG_MEL_FLOOR, RIGHT_MEL
from models.train.whisper import WhisperEncoder, load_whisper

__all__ = ["CHUNK", "CONTEXT_MEL", "LEFT", "LOOK", "ChunkedEncoder", "encode_chunks", "load_student"]

CHUNK = CHUNK_MEL // 2  # encoder frames per chunk
LEFT = LEFT_MEL // 2  # encoder frames of cached keys and values
LOOK = RIGHT_MEL // 2  # encoder frames of look-ahead
# Log-mel frames a step needs after its chunk: the look-ahead, and one more that the
# convolutions' right edge reads (Whisper pads it with zeros; here it is real audio).
CONTEXT_MEL = RIGHT_MEL + 1
_CONV_LEFT = 2  # log-mel frames before the chunk the two convolutions read


class ChunkedEncoder(nn.Module):
    def __init__(self, encoder: WhisperEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        first = encoder.layers[0].attn
        self.heads = first.heads
        self.d = first.out.in_features

    def _front(self, window: Tensor, n_valid: Tensor | None = None) -> Tensor:
        """Windows (B, LEFT_MEL + 2n + CONTEXT_MEL, mel) of raw log10 mel -> (B, n + LOOK, d)
        convolution outputs, before positions. ``n_valid`` (B,): the frames of each window that
        count towards the maximum (the rest is padding)."""
        if n_valid is None:
            top = window.amax(dim=(1, 2), keepdim=True)
        else:
            inside = torch.arange(window.shape[1], device=window.device)[None, :, None] < n_valid[:, None, None]
            top = window.masked_fill(~inside, float("-inf")).amax(dim=(1, 2), keepdim=True)
        x = (torch.maximum(window[:, LEFT_MEL - _CONV_LEFT :], top - 8.0) + 4.0) / 4.0
        enc = self.encoder
        # No padding: the frames either side are real (the cache, the look-ahead).
        x = F.gelu(F.conv1d(x.transpose(1, 2), enc.conv1.weight, enc.conv1.bias))
        return F.gelu(F.conv1d(x, enc.conv2.weight, enc.conv2.bias, stride=2)).transpose(1, 2)

    def step(self, feats: Tensor, mel_cache: Tensor, k_cache: Tensor, v_cache: Tensor, cache_len: Tensor
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """One chunk for a batch of streams.

        feats (B, 2n + CONTEXT_MEL, mel): the chunk's raw log10-mel frames and the look-ahead;
        mel_cache (B, LEFT_MEL, mel): the log-mel frames before them;
        k_cache, v_cache (layers, B, LEFT, d): each layer's keys and values of earlier frames;
        cache_len (B,) int64: how many of the LEFT cached frames are real (the newest ones).
        Returns the chunk's features (B, n, d) and the new caches.
        """
        n = (feats.shape[1] - CONTEXT_MEL) // 2
        window = torch.cat([mel_cache, feats], dim=1)
        enc = self.encoder
        x = self._front(window) + enc.positions[LEFT : LEFT + n + LOOK]
        b, t = x.shape[0], x.shape[1]
        slots = torch.arange(LEFT, device=x.device)
        cached = slots[None, :] >= (LEFT - cache_len)[:, None]  # (B, LEFT)
        mask = torch.cat([cached, torch.ones(b, t, dtype=torch.bool, device=x.device)], dim=1)
        mask = mask[:, None, None, :]  # (B, 1, 1, LEFT + t): every query sees the same keys
        new_k, new_v = [], []
        for i, layer in enumerate(enc.layers):
            att = layer.attn
            q, k, v = att.qkv(att.norm(x)).chunk(3, dim=-1)
            keys = torch.cat([k_cache[i], k], dim=1)
            values = torch.cat([v_cache[i], v], dim=1)
            y = F.scaled_dot_product_attention(self._split(q), self._split(keys), self._split(values),
                                               attn_mask=mask)
            x = layer.ffn(x + att.out(y.transpose(1, 2).reshape(b, t, self.d)))
            new_k.append(keys[:, n : n + LEFT])
            new_v.append(values[:, n : n + LEFT])
        out = enc.norm(x[:, :n])
        new_len = torch.clamp(cache_len + n, max=LEFT)
        return out, window[:, 2 * n : 2 * n + LEFT_MEL], torch.stack(new_k), torch.stack(new_v), new_len

    def init_cache(self, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """A new stream's caches: the log-mel floor (silence) and no cached frames."""
        layers, n_mels = len(self.encoder.layers), self.encoder.conv1.in_channels
        return (torch.full((batch, LEFT_MEL, n_mels), LOG_MEL_FLOOR),
                torch.zeros(layers, batch, LEFT, self.d), torch.zeros(layers, batch, LEFT, self.d),
                torch.zeros(batch, dtype=torch.int64))

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.d // self.heads).transpose(1, 2)

    def forward(self, mel: Tensor, sizes: Sequence[int]) -> Tensor:
        """Whole utterances under the step schedule: mel (B, T, n_mels) raw log10 mel, padded
        with the floor; ``sizes``: the chunk sizes in encoder frames, in order, summing to
        T // 2 at least. Returns (B, sum(sizes), d), what the steps would return one by one."""
        b, t_mel, n_mels = mel.shape
        total = sum(sizes)
        need = LEFT_MEL + 2 * total + CONTEXT_MEL
        padded = mel.new_full((b, need, n_mels), LOG_MEL_FLOOR)
        kept = min(t_mel, 2 * total + CONTEXT_MEL)
        padded[:, LEFT_MEL : LEFT_MEL + kept] = mel[:, :kept]
        width = LEFT_MEL + 2 * CHUNK + CONTEXT_MEL
        starts = [0, *accumulate(sizes)][:-1]
        windows, valid = [], []
        for s, n in zip(starts, sizes):
            w = padded[:, 2 * s : 2 * s + LEFT_MEL + 2 * n + CONTEXT_MEL]
            windows.append(F.pad(w, (0, 0, 0, width - w.shape[1]), value=LOG_MEL_FLOOR))
            valid.append(w.shape[1])
        front = self._front(torch.cat(windows),  # (C * B, CHUNK + LOOK, d), chunk-major
                            torch.tensor(valid, device=mel.device).repeat_interleave(b))
        front = front.view(len(sizes), b, CHUNK + LOOK, self.d)
        pos = self.encoder.positions
        main = torch.cat([front[c, :, :n] + pos[LEFT : LEFT + n] for c, n in enumerate(sizes)], dim=1)
        look = torch.cat([front[c, :, n : n + LOOK] + pos[LEFT + n : LEFT + n + LOOK] for c, n in enumerate(sizes)],
                         dim=1)
        x = torch.cat([main, look], dim=1)
        mask = _schedule_mask(starts, sizes, mel.device)
        for layer in self.encoder.layers:
            x = layer(x, mask)
        return self.encoder.norm(x[:, :total])


def _schedule_mask(starts: Sequence[int], sizes: Sequence[int], device: torch.device) -> Tensor:
    """Bool (L, L) over [chunk frames, look-ahead frames]: what each query's step sees. A step's
    queries (its chunk and its look-ahead) see the ``LEFT`` chunk frames before the chunk, the
    chunk, and the chunk's own look-ahead."""
    total, n_chunks = sum(sizes), len(sizes)
    chunk_of = torch.repeat_interleave(torch.arange(n_chunks, device=device), torch.tensor(sizes, device=device))
    begin = torch.tensor(starts, device=device)
    end = begin + torch.tensor(sizes, device=device)
    group = torch.cat([chunk_of, torch.arange(n_chunks, device=device).repeat_interleave(LOOK)])
    frame = torch.arange(total, device=device)
    sees_main = (frame[None, :] >= (begin[group] - LEFT)[:, None]) & (frame[None, :] < end[group][:, None])
    sees_look = group[None, total:] == group[:, None]
    return torch.cat([sees_main, sees_look], dim=1)


def load_student(path: Path | None = None) -> ChunkedEncoder:
    """Whisper tiny.en's encoder as a ``ChunkedEncoder``, with the fine-tuned weights of ``path``
    (a ``models.train.distil_encoder`` checkpoint) when given. In eval mode, float32."""
    _, encoder, _ = load_whisper(decoder=False)
    student = ChunkedEncoder(encoder)
    if path is not None:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        student.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    return student.eval()


@torch.no_grad()
def encode_chunks(encoder: ChunkedEncoder, mel: np.ndarray) -> np.ndarray:
    """An utterance's features as the served steps give them, in whole chunks: mel float32
    (T, n_mels) raw log10 mel -> float32 (T // 2, d)."""
    frames = mel.shape[0] // 2
    return encoder(torch.as_tensor(mel)[None], [CHUNK] * -(-frames // CHUNK))[0, :frames].numpy()
