"""Training data for the acoustic model: manifests, splits, augmentation.

Augmentation is what makes a model trained mostly on synthetic voices work on
real ones, so every utterance draws a random chain: speed perturbation (which
also shifts pitch and vocal-tract length, as in Kaldi's 3-way perturbation),
simulated room reverberation, additive noise at a random SNR, and a telephone
channel (8 kHz band limit and a G.711 round trip through the same codec the
server decodes with). Clips get up to a second of near-silence around them, as
live streams have. On the features, a vocal-tract-length warp (VTLP) moves
the formants without touching tempo, which makes new "speakers" out of the few
real ones, and SpecAugment masks the rest.
"""

from __future__ import annotations

import csv
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve

from operators.audio import alaw_decode, alaw_encode, dither, mulaw_decode, mulaw_encode
from operators.features import FeatureConfig, LogMelOperator, mel_bin_centres

__all__ = [
    "Augmenter",
    "Utterance",
    "load_manifest",
    "real_speech_splits",
    "spec_augment",
    "vtlp",
]

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str
    speaker: str = ""
    duration: float = 0.0  # s


def load_manifest(path: Path) -> list[Utterance]:
    """Read a tab-separated manifest with a header (``path``, ``text``, optional ``speaker``, ``duration``)."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if rows and "path" not in rows[0]:
        raise ValueError(f"expected a 'path' column in {path}, got {list(rows[0])}")
    return [
        Utterance(
            path=path.parent / r["path"],
            text=(r.get("text") or "").strip().lower(),
            speaker=r.get("speaker") or "",
            duration=float(r.get("duration") or 0.0),
        )
        for r in rows
    ]


# Development speakers are kept out of training. FSDD: one whole speaker;
# Speech Commands: a fifth of the speakers (by a stable hash); AN4: every other clip.
FSDD_DEV_SPEAKERS = ("nicolas",)


def _stable_fraction(key: str) -> float:
    return (zlib.crc32(key.encode()) % 1000) / 1000.0


def real_speech_splits(data_root: Path) -> dict[str, dict[str, list[Utterance]]]:
    """The real-speech train/dev splits: ``{corpus: {"train": [...], "dev": [...]}}``."""
    out: dict[str, dict[str, list[Utterance]]] = {}
    fsdd = load_manifest(data_root / "fsdd" / "manifest.tsv")
    out["fsdd"] = {
        "train": [u for u in fsdd if u.speaker not in FSDD_DEV_SPEAKERS],
        "dev": [u for u in fsdd if u.speaker in FSDD_DEV_SPEAKERS],
    }
    sc = load_manifest(data_root / "speechcommands" / "manifest.tsv")
    out["speechcommands"] = {
        "train": [u for u in sc if _stable_fraction(u.speaker) >= 0.2],
        "dev": [u for u in sc if _stable_fraction(u.speaker) < 0.2],
    }
    an4 = load_manifest(data_root / "an4" / "manifest.tsv")
    out["an4"] = {"train": an4[0::2], "dev": an4[1::2]}
    return out


def load_audio(path: Path) -> np.ndarray:
    """Any WAV/FLAC -> float32 mono (N,) at 16 kHz."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        x = soxr.resample(x, sr, SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


class Augmenter:
    """Random waveform augmentation, then log-mel and SpecAugment."""

    def __init__(self, seed: int, noise_pool: list[np.ndarray] | None = None, prob: float = 1.0,
                 quiet_edges: bool = True, dither: bool = False) -> None:
        self.prob = prob  # share of utterances augmented at all (a clean start shortens the CTC plateau)
        self.quiet_edges = quiet_edges  # off when frame targets (distillation) must stay aligned
        self.dither = dither  # the serving pipeline's dither (operators.audio.dither) before the features
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.noise_pool = noise_pool or []
        self.features = LogMelOperator()

    def waveform(self, x: np.ndarray) -> np.ndarray:
        r = self.rng
        if self.quiet_edges and r.random() < 0.5:
            x = self._quiet_edges(x)
        if r.random() < 0.6:
            x = soxr.resample(x, SAMPLE_RATE, int(SAMPLE_RATE / r.uniform(0.85, 1.15)))
        if r.random() < 0.3:
            x = self._reverb(x)
        if r.random() < 0.5:
            x = self._noise(x, snr_db=r.uniform(0.0, 30.0))
        if r.random() < 0.4:
            x = self._telephone(x)
        peak = float(np.abs(x).max()) or 1.0
        return (x / peak * 10 ** (r.uniform(-30.0, -1.0) / 20)).astype(np.float32)

    def _quiet_edges(self, x: np.ndarray) -> np.ndarray:
        """Up to 1 s of near-silence before the speech and 0.5 s after it.

        Most clips (FSDD, the synthetic voices) start on their first phoneme. A model
        that only ever starts from an empty context loses the first phoneme after
        silence, as every live stream has: FSDD dev WER went 0.43 -> 0.63 with 1 s of
        quiet noise in front. (3,000 steps with this on did not fix it yet: model card.)
        """
        level = float(np.abs(x).max() or 1.0) * 10 ** (self.rng.uniform(-70.0, -35.0) / 20)
        lead, trail = int(self.rng.uniform(0.0, 1.0) * SAMPLE_RATE), int(self.rng.uniform(0.0, 0.5) * SAMPLE_RATE)
        out = (self.np_rng.standard_normal(lead + x.size + trail) * level).astype(np.float32)
        out[lead : lead + x.size] += x
        return out

    def _reverb(self, x: np.ndarray) -> np.ndarray:
        rt60 = self.rng.uniform(0.15, 0.8)
        n = int(rt60 * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        rir = self.np_rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
        rir[0] = 1.0 / max(self.rng.uniform(0.5, 4.0), 1e-3) + abs(rir[0])  # direct path
        y = fftconvolve(x, rir)[: x.size]
        return (y / (np.abs(y).max() + 1e-9) * (np.abs(x).max() + 1e-9)).astype(np.float32)

    def _noise(self, x: np.ndarray, snr_db: float) -> np.ndarray:
        kind = self.rng.choice(["white", "pink", "brown", "babble", "hum"])
        n = x.size
        if kind == "babble" and self.noise_pool:
            parts = [self.noise_pool[self.rng.randrange(len(self.noise_pool))] for _ in range(3)]
            noise = np.zeros(n, dtype=np.float64)
            for p in parts:
                reps = int(np.ceil(n / max(p.size, 1)))
                noise += np.tile(p, reps)[:n]
        elif kind == "hum":
            t = np.arange(n) / SAMPLE_RATE
            f0 = self.rng.choice([50.0, 60.0])
            noise = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
            noise = noise + 0.1 * self.np_rng.standard_normal(n)
        else:
            if kind == "white":
                noise = self.np_rng.standard_normal(n)
            else:
                m = next_fast_len(n, real=True)  # odd lengths make numpy's FFT 10x slower
                spec = np.fft.rfft(self.np_rng.standard_normal(m))
                f = np.maximum(np.fft.rfftfreq(m, 1 / SAMPLE_RATE), 20.0)
                spec /= np.sqrt(f) if kind == "pink" else f
                noise = np.fft.irfft(spec, m)[:n]
        p_sig = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        p_noise = float(np.mean(noise**2)) + 1e-12
        return (x + noise * np.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))).astype(np.float32)

    def _telephone(self, x: np.ndarray) -> np.ndarray:
        y = soxr.resample(x, SAMPLE_RATE, 8000)
        y = y / (np.abs(y).max() + 1e-9) * self.rng.uniform(0.3, 0.95)
        if self.rng.random() < 0.5:
            y = mulaw_decode(mulaw_encode(y))
        else:
            y = alaw_decode(alaw_encode(y))
        return soxr.resample(y, 8000, SAMPLE_RATE).astype(np.float32)

    def features_of(self, x: np.ndarray, augment: bool) -> np.ndarray:
        """float32 (N,) 16 kHz -> float32 (T, 80) log-mel, augmented if asked."""
        augment = augment and self.rng.random() < self.prob
        if augment:
            x = self.waveform(x)
        if self.dither:
            x = dither(x, 0)
        feats = self.features.feed(self.features.new_state(), x)
        if not augment:
            return feats
        if self.rng.random() < 0.5:
            feats = vtlp(feats, self.rng.uniform(0.88, 1.12), self.features.config)
        return spec_augment(feats, self.rng)


def vtlp(feats: np.ndarray, alpha: float, cfg: FeatureConfig) -> np.ndarray:
    """Vocal-tract-length perturbation on log-mel features (Jaitly & Hinton, 2013).

    Bin ``i`` takes the value the spectrum had at ``f_i / alpha``, where ``f_i`` is
    the bin's centre frequency: ``alpha > 1`` stretches the spectrum upwards (a
    shorter vocal tract). Above ``0.85 * nyquist * min(1, alpha)`` the warp is
    linear back to Nyquist so no band is lost. Warping the features instead of
    the waveform keeps it cheap and the tempo unchanged; torchaudio has no VTLP.
    """
    n = feats.shape[1]
    nyquist = cfg.sample_rate / 2
    centres = mel_bin_centres(cfg)
    knee = 0.85 * nyquist * min(1.0, alpha)
    src = np.where(centres <= knee, centres / alpha,
                   knee / alpha + (centres - knee) * (nyquist - knee / alpha) / (nyquist - knee))
    pos = np.interp(src, centres, np.arange(n, dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (pos - lo).astype(np.float32)
    return (feats[:, lo] * (1.0 - w) + feats[:, hi] * w).astype(np.float32)


def spec_augment(feats: np.ndarray, rng: random.Random) -> np.ndarray:
    """Two frequency masks (up to 15 bins) and time masks (up to 5% of frames each)."""
    out = feats.copy()
    t, f = out.shape
    fill = float(out.mean()) if out.size else 0.0
    for _ in range(2):
        w = rng.randint(0, 15)
        s = rng.randint(0, max(0, f - w))
        out[:, s : s + w] = fill
    for _ in range(min(4, max(1, t // 100))):
        w = rng.randint(0, max(1, int(0.05 * t)))
        s = rng.randint(0, max(0, t - w))
        out[s : s + w, :] = fill
    return out


def write_dev_manifests(out_dir: Path, data_root: Path | None = None) -> list[Path]:
    """Write the development splits as ``eval-asr`` manifests (absolute paths) under ``out_dir``."""
    data_root = data_root or Path(__file__).resolve().parents[3] / "shared" / "data" / "speech"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, split in real_speech_splits(data_root).items():
        path = out_dir / f"{name}_dev.tsv"
        with open(path, "w") as f:
            f.write("path\ttext\tspeaker\n")
            for u in split["dev"]:
                f.write(f"{u.path.resolve()}\t{u.text}\t{u.speaker}\n")
        written.append(path)
    return written


if __name__ == "__main__":
    import sys

    for p in write_dev_manifests(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/dev")):
        print(p)
