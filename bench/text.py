"""Latency of the text operators per final on one core: intent, filters (toxicity + redaction), both.

Each utterance of the BANKING77 dev split (normalised like a final) goes
through ``Enricher.enrich`` one at a time, as the pipeline calls it, with
the process pinned to one CPU core and onnxruntime on one thread. Prints
p50/p90/p99 wall-clock milliseconds, plus the process CPU time of the
combined call (the wall time when nothing else wants the core; the kernel's
accounting makes it coarse, so read its p50 only); ``--json`` adds one JSON
object as the last line.

    python bench/text.py [--n 1000] [--encoder mpnet-base-v2] [--fp32 --head HEAD.npz] [--json]

``--fp32`` serves the float32 encoder (mpnet-base-v2 serves it by default), which needs a head trained on it
(``callstream train-intent --fp32 --spoken 0 --out HEAD.npz [--encoder ...]``).

The load average is printed too: on a shared machine other processes
inflate every figure.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the callstream command does (stream/cli.py)

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.intent_train import banking77_split, load_banking77  # noqa: E402
from operators.content import ToxicityModel  # noqa: E402
from operators.enrich import Enricher  # noqa: E402
from operators.intent import DEFAULT_ENCODER, ENCODERS, IntentConfig, load_classifier  # noqa: E402
from stream.events import Final, Word  # noqa: E402

__all__ = ["main"]


def _finals(n: int) -> list[Final]:
    texts, labels = load_banking77()
    _, dev = banking77_split(labels)
    out = []
    for k, i in enumerate(dev[:n]):
        words = tuple(Word(w, 0.3 * j, 0.3 * j + 0.25, 0.9) for j, w in enumerate(texts[i].split()))
        out.append(Final("bench", "customer", f"bench/customer/{k}", k, texts[i], words, start=0.0, end=words[-1].end))
    return out


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="utterances (BANKING77 dev has 1001)")
    parser.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default=DEFAULT_ENCODER)
    parser.add_argument("--fp32", action="store_true", help="the float32 encoder (give its head with --head)")
    parser.add_argument("--head", type=Path, default=None, help="intent head (default: the encoder's bundled one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    os.sched_setaffinity(0, {args.core})
    classifier = load_classifier(IntentConfig(encoder=args.encoder, quantized=False if args.fp32 else None,
                                              head=args.head, threads=1))
    tox = ToxicityModel.load()
    both = Enricher(classifier, tox)
    filters = Enricher(None, tox)
    finals = _finals(args.n)
    for f in finals[:20]:  # warm-up: first runs allocate and page in weights
        both.enrich(both.new_state(), f)

    timings: dict[str, list[float]] = {"intent": [], "filters": [], "intent+filters": [], "intent+filters cpu": []}
    for f in finals:
        t0 = time.perf_counter()
        classifier.classify(f.text)
        t1 = time.perf_counter()
        filters.enrich(filters.new_state(), f)
        t2 = time.perf_counter()
        c2 = time.process_time()
        both.enrich(both.new_state(), f)
        t3 = time.perf_counter()
        timings["intent"].append(t1 - t0)
        timings["filters"].append(t2 - t1)
        timings["intent+filters"].append(t3 - t2)
        # CPU time of this process: what the call costs when the core is not shared.
        timings["intent+filters cpu"].append(time.process_time() - c2)

    words = np.mean([len(f.words) for f in finals])
    print(f"{len(finals)} finals (BANKING77 dev, mean {words:.1f} words), one core (#{args.core}), "
          f"encoder {classifier.encoder.name}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    report = {}
    for name, samples in timings.items():
        report[name] = _percentiles(samples)
        r = report[name]
        print(f"{name:18s} p50 {r['p50_ms']:6.2f} ms   p90 {r['p90_ms']:6.2f} ms   p99 {r['p99_ms']:6.2f} ms")
    if args.json:
        print(json.dumps({**report, "n": len(finals), "encoder": classifier.encoder.name,
                          "load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
