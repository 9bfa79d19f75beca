"""Shared pieces of the benchmarks: real dev audio, percentiles, tables, the generated calls' command line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from models.train.data import SAMPLE_RATE, Utterance, load_audio, real_speech_splits

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data" / "speech"


def dev_sets(n: int) -> dict[str, list[Utterance]]:
    """``n`` utterances spread evenly over each real-speech dev split (speakers held out of training)."""
    out = {}
    for name, split in real_speech_splits(DATA_ROOT).items():
        dev = split["dev"]
        out[f"{name}_dev"] = dev[:: max(1, len(dev) // n)][:n]
    return out


def speech_clip(seconds: float, gap_s: float = 0.6, seed: int = 0) -> np.ndarray:
    """About ``seconds`` of real dev speech at 16 kHz: dev utterances with silences between them."""
    rng = np.random.default_rng(seed)
    utts = [u for split in dev_sets(10**6).values() for u in split]
    parts, total = [], 0
    gap = np.zeros(int(gap_s * SAMPLE_RATE), np.float32)
    while total < seconds * SAMPLE_RATE:
        x = load_audio(utts[int(rng.integers(len(utts)))].path)
        parts += [x, gap]
        total += x.size + gap.size
    return np.concatenate(parts)[: int(seconds * SAMPLE_RATE)]


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned numbers."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines) + "\n"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def calls_main(argv: list[str] | None, prog: str, doc: str, run: Callable[[int, int], tuple[str, object]],
               calls: int) -> int:
    """The command line of a bench over generated calls: ``--calls N --seed S``, then its table."""
    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    p.add_argument("--calls", type=int, default=calls)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(run(args.calls, args.seed)[0])
    return 0
