"""Whisper's encoder run on streaming windows: the pretrained half of the acoustic model.

Whisper's encoder attends over its whole 30 s input. To stream, each chunk of
``CHUNK_MEL`` log-mel frames is encoded inside a window that adds up to
``LEFT_MEL`` frames of left context and ``RIGHT_MEL`` frames of look-ahead,
with positions from 0 in every window, and only the chunk's frames are kept.
At a stream's start the left context is the log-mel floor (silence), which is
what Whisper sees in its own zero padding. Every window is normalised on its
own, as Whisper normalises each input (clamp at its maximum minus 8, then
``(x + 4) / 4``), so a window's features depend on nothing outside it and
training (``encode_utterance``) and serving (the ONNX step) compute the same
numbers.

Cost: each 0.32 s chunk re-encodes a 1.76 s window, 5.5 times the frames a
whole-utterance pass would. Serving therefore runs the encoder chunk by chunk
with a key/value cache (``models.train.chunk_encoder``), fine-tuned to give
these windows' features; the windowed encoder is its teacher.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.train.whisper import WhisperEncoder, load_whisper
from operators.audio import dither
from operators.features import FeatureConfig, LogMelOperator

__all__ = ["CHUNK_MEL", "LEFT_MEL", "LOG_MEL_FLOOR", "RIGHT_MEL", "AudioEncoder", "ServingMel", "WindowedEncoder",
           "encode_utterance"]

LEFT_MEL = 128  # 1.28 s of left context
CHUNK_MEL = 32  # 0.32 s per chunk: 16 encoder frames
RIGHT_MEL = 16  # 0.16 s of look-ahead
LOG_MEL_FLOOR = -10.0  # log10 of the front end's floor (operators.features, kind "whisper")


class WindowedEncoder(nn.Module):
    """Raw log10-mel windows (B, W, n_mels) -> encoder features (B, W // 2, d) of each window."""

    def __init__(self, encoder: WhisperEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        top = window.amax(dim=(1, 2), keepdim=True)
        x = (torch.maximum(window, top - 8.0) + 4.0) / 4.0
        return self.encoder(x.transpose(1, 2))


@torch.no_grad()
def encode_utterance(model: WindowedEncoder, mel: np.ndarray, batch: int = 64) -> np.ndarray:
    """Streaming encoder features of a whole utterance, chunk by chunk, as serving computes them.

    mel: float32 (T, n_mels) raw log10 mel from ``LogMelOperator`` (kind "whisper").
    Returns float32 (T // 2, d).
    """
    t = mel.shape[0]
    n_chunks = max(1, -(-t // CHUNK_MEL))
    total = LEFT_MEL + n_chunks * CHUNK_MEL + RIGHT_MEL
    padded = np.full((total, mel.shape[1]), LOG_MEL_FLOOR, np.float32)
    padded[LEFT_MEL : LEFT_MEL + t] = mel
    size = LEFT_MEL + CHUNK_MEL + RIGHT_MEL
    windows = np.stack([padded[k * CHUNK_MEL : k * CHUNK_MEL + size] for k in range(n_chunks)])
    first, n = LEFT_MEL // 2, CHUNK_MEL // 2
    out = []
    for i in range(0, n_chunks, batch):
        feats = model(torch.from_numpy(windows[i : i + batch]))
        out.append(feats[:, first : first + n].reshape(-1, feats.shape[-1]).numpy())
    return np.concatenate(out)[: t // 2]


class ServingMel:
    """16 kHz audio -> raw log10 mel (T, n_mels) as serving computes it: the serving dither, then
    Whisper's log-mel front end."""

    def __init__(self) -> None:
        self.front = LogMelOperator(FeatureConfig(kind="whisper"))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.front.feed(self.front.new_state(), dither(audio, 0))


class AudioEncoder:
    """16 kHz audio -> streaming encoder features, as serving computes them: the serving dither,
    Whisper's log-mel front end, then Whisper tiny.en's encoder, either on windows
    (``encode_utterance``, the teacher the bundled head was trained on) or, given ``chunked``
    weights (a ``models.train.distil_encoder`` checkpoint), chunk by chunk with its cache as the
    served step runs it."""

    def __init__(self, chunked: Path | None = None) -> None:
        self.mel = ServingMel()
        if chunked is None:
            _, encoder, _ = load_whisper(decoder=False)
            model = WindowedEncoder(encoder).eval()
            self.encode = lambda mel: encode_utterance(model, mel)
        else:
            from models.train.chunk_encoder import encode_chunks, load_student

            student = load_student(chunked)
            self.encode = lambda mel: encode_chunks(student, mel)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """float32 (N,) at 16 kHz -> float32 (frames, d)."""
        return self.encode(self.mel(audio))
