"""Streaming log-mel filterbank features in numpy, in two kinds.

* ``kaldi``: Kaldi's ``fbank`` (the one ``torchaudio.compliance.kaldi.fbank``
  implements): povey window, pre-emphasis, DC removal, power spectrum,
  triangular mel filters, natural log. The from-scratch Conformer uses it.
* ``whisper``: Whisper's front end: periodic Hann window over 400 samples,
  400-point power spectrum, Slaney-normalised mel filters from 0 to 8 kHz,
  log10 with a floor of 1e-10. The stream starts with half a window of zeros,
  so frame ``i`` is centred on sample ``160 i`` as in Whisper's centred STFT.
  Whisper's per-input normalisation (clamp at max - 8, then (x + 4) / 4) needs
  a whole window of frames, so it belongs to the encoder step, not here.

Both are written in numpy because the serving path must not import torch, and
because streaming needs frame-exact state across chunks, which no numpy
library offers. Frames are ``snip_edges`` style: frame ``i`` covers samples
``[i * shift, i * shift + window)``, so the features of a stream do not depend
on how its audio was chunked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FeatureConfig", "FeatureState", "LogMelOperator", "mel_bin_centres", "mel_filterbank", "whisper_filterbank"]

# Kaldi works on int16-scaled samples; our audio is float in [-1, 1].
_INT16_SCALE = 32768.0
_LOG_FLOOR = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel settings. They travel in the ONNX metadata of every model."""

    kind: str = "kaldi"  # kaldi | whisper
    sample_rate: int = 16000  # Hz
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    preemphasis: float = 0.97
    low_freq: float = 20.0  # Hz
    high_freq: float = 0.0  # Hz; <= 0 means offset from Nyquist, as in Kaldi

    @property
    def window_size(self) -> int:
        """Samples per frame."""
        return int(self.sample_rate * self.frame_length_ms / 1000.0)

    @property
    def window_shift(self) -> int:
        """Samples between frame starts."""
        return int(self.sample_rate * self.frame_shift_ms / 1000.0)

    @property
    def fft_size(self) -> int:
        if self.kind == "whisper":
            return self.window_size
        return 1 << (self.window_size - 1).bit_length()

    def as_metadata(self) -> dict[str, str]:
        return {f"feature.{k}": str(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> "FeatureConfig":
        kwargs: dict[str, object] = {}
        for name, f in cls.__dataclass_fields__.items():
            raw = meta.get(f"feature.{name}")
            if raw is not None:
                kwargs[name] = raw if f.type in ("str", str) else int(raw) if f.type in ("int", int) else float(raw)
        config = cls(**kwargs)  # type: ignore[arg-type]
        if config.kind not in ("kaldi", "whisper"):
            raise ValueError(f"expected feature kind 'kaldi' or 'whisper', got {config.kind!r}")
        return config


def _mel(f: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_range(cfg: FeatureConfig) -> tuple[float, float]:
    """(mel of the lowest filter edge, mel spacing of the filters)."""
    nyquist = 0.5 * cfg.sample_rate
    high = cfg.high_freq if cfg.high_freq > 0 else nyquist + cfg.high_freq
    if not 0.0 <= cfg.low_freq < high <= nyquist:
        raise ValueError(f"expected 0 <= low_freq < high_freq <= {nyquist}, got {cfg.low_freq}, {high}")
    mel_low = float(_mel(cfg.low_freq))
    return mel_low, (float(_mel(high)) - mel_low) / (cfg.num_mel_bins + 1)


def mel_bin_centres(cfg: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel filter: float64 array of shape (num_mel_bins,)."""
    mel_low, delta = _mel_range(cfg)
    return 700.0 * np.expm1((mel_low + np.arange(1, cfg.num_mel_bins + 1) * delta) / 1127.0)


def mel_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Kaldi's triangular mel filters: float64 array of shape (fft_size // 2 + 1, num_mel_bins)."""
    mel_low, delta = _mel_range(cfg)
    n_bins = cfg.fft_size // 2
    idx = np.arange(cfg.num_mel_bins, dtype=np.float64)[:, None]
    left, center, right = mel_low + idx * delta, mel_low + (idx + 1) * delta, mel_low + (idx + 2) * delta
    m = _mel(cfg.sample_rate / cfg.fft_size * np.arange(n_bins))[None, :]
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    # Kaldi leaves the Nyquist bin out of every filter.
    return np.concatenate([banks, np.zeros((cfg.num_mel_bins, 1))], axis=1).T


def _slaney_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's default, Whisper's)."""
    f = np.asarray(f, dtype=np.float64)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, 3.0 * f / 200.0)


def _slaney_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), 200.0 * m / 3.0)


def whisper_filterbank(cfg: FeatureConfig) -> np.ndarray:
    """Slaney-normalised mel filters from 0 Hz to Nyquist: float64 (fft_size // 2 + 1, num_mel_bins)."""
    n = cfg.num_mel_bins
    edges = _slaney_hz(np.linspace(0.0, float(_slaney_mel(cfg.sample_rate / 2)), n + 2))
    bins = np.linspace(0.0, cfg.sample_rate / 2, cfg.fft_size // 2 + 1)
    ramps = edges[:, None] - bins[None, :]
    widths = np.diff(edges)
    lower = -ramps[:n] / widths[:n, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:n]))[:, None]
    return weights.T


@dataclass
class FeatureState:
    """Per-stream state: samples not yet covered by a whole frame."""

    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    frames_emitted: int = 0


class LogMelOperator:
    """Shared, read-only filterbank; the per-stream part lives in ``FeatureState``."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        n = self.config.window_size
        if self.config.kind == "whisper":
            self._window = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / n)
            self._banks = whisper_filterbank(self.config)
        else:
            self._window = np.power(0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(n) / (n - 1)), 0.85)
            self._banks = mel_filterbank(self.config)

    def new_state(self) -> FeatureState:
        if self.config.kind == "whisper":
            return FeatureState(pending=np.zeros(self.config.fft_size // 2, dtype=np.float32))
        return FeatureState()

    def feed(self, state: FeatureState, samples: np.ndarray) -> np.ndarray:
        """Take float32 samples of shape (N,) at ``config.sample_rate`` in [-1, 1].

        Returns float32 log-mel frames of shape (F, num_mel_bins) for every
        frame the audio so far completes (F may be 0).
        """
        if samples.ndim != 1:
            raise ValueError(f"expected samples of shape (N,), got {samples.shape}")
        buf = np.concatenate([state.pending, samples.astype(np.float32, copy=False)])
        win, shift = self.config.window_size, self.config.window_shift
        n_frames = 0 if buf.size < win else 1 + (buf.size - win) // shift
        state.pending = buf[n_frames * shift :].copy()
        state.frames_emitted += n_frames
        if n_frames == 0:
            return np.zeros((0, self.config.num_mel_bins), dtype=np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(buf, win)[::shift][:n_frames]
        return self.compute(frames)

    def compute(self, frames: np.ndarray) -> np.ndarray:
        """Log-mel of framed audio: (F, window_size) float in [-1, 1] -> (F, num_mel_bins) float32."""
        if self.config.kind == "whisper":
            spec = np.fft.rfft(frames.astype(np.float64) * self._window, n=self.config.fft_size, axis=1)
            mel = (spec.real**2 + spec.imag**2) @ self._banks
            return np.log10(np.maximum(mel, 1e-10)).astype(np.float32)
        x = frames.astype(np.float64) * _INT16_SCALE
        x = x - x.mean(axis=1, keepdims=True)
        prev = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
        x = (x - self.config.preemphasis * prev) * self._window
        spec = np.fft.rfft(x, n=self.config.fft_size, axis=1)
        power = spec.real**2 + spec.imag**2
        mel = power @ self._banks
        return np.log(np.maximum(mel, _LOG_FLOOR)).astype(np.float32)
