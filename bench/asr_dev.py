"""The acoustic model's development table: every decoding mode and the Whisper peers, same audio, one run.

Columns: callstream streaming greedy CTC, CTC beam with the LMs, and two-pass
(the beam's finals decoded again by Whisper's decoder: base with a beam of 4,
the default; greedy; tiny.en); Whisper tiny.en and base offline over whole
utterances (greedy) as the peers. Rows: the
real-speech dev splits, the held-out synthetic voice and the barista set (real
crowd-sourced sentences, scored by slot-value recall since it has no verbatim
transcripts). Each system runs in its own process, so two run side by side on
two cores. Development figures only: none of this audio is trained on.

    python -m bench.asr_dev [--n 100] [--latency 20] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from bench.common import DATA_ROOT, ROOT, dev_sets, percentile, table
from models.train.data import Utterance, load_audio
from models.evaluate import slot_hits
from models.metrics import ErrorCounter
from operators.spoken_form import normalize_text

__all__ = ["SYSTEMS", "dev_table", "main"]

SYSTEMS = ("greedy", "beam+LM", "two-pass, greedy 2nd", "two-pass, tiny.en 2nd", "two-pass", "Whisper tiny.en",
           "Whisper base")
HELDOUT_VOICE = ROOT / "runs" / "dev" / "heldout_voice" / "manifest.tsv"
BARISTA = DATA_ROOT / "barista_dev" / "manifest.tsv"


def sets(n: int) -> dict[str, list[tuple[Utterance, str]]]:
    """name -> [(utterance, slots_json or "")], ``n`` per set spread evenly."""
    out = {name: [(u, "") for u in utts] for name, utts in dev_sets(n).items()}
    if HELDOUT_VOICE.exists():
        with open(HELDOUT_VOICE, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        out["heldout_voice"] = [(Utterance(HELDOUT_VOICE.parent / r["path"], r["text"]), "")
                                for r in rows[:: max(1, len(rows) // n)][:n]]
    if BARISTA.exists():
        with open(BARISTA, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        out["barista_dev"] = [(Utterance(BARISTA.parent / r["path"], ""), r["slots_json"])
                              for r in rows[:: max(1, len(rows) // n)][:n]]
    return out


def _recognizer(system: str, hotwords: tuple[tuple[str, float], ...] = ()):
    """``hotwords`` go to callstream's systems only (the peers have none)."""
    from bench.peers import callstream, whisper
    from stream.app import DecodingConfig

    if system.startswith("Whisper "):
        return whisper(1, 1, "float32", system.removeprefix("Whisper "))
    settings = {"greedy": {"search": "greedy", "second_pass": False},
                "beam+LM": {"second_pass": False},
                "two-pass, greedy 2nd": {"second_pass_beam": 1},
                "two-pass, tiny.en 2nd": {"second_pass_model": "tiny.en"},
                "two-pass": {}}[system]
    return callstream(1, DecodingConfig(**settings, hotwords=hotwords))


def _score(system: str, n: int, hotwords: tuple[tuple[str, float], ...] = ()) -> dict[str, dict[str, float]]:
    recognize = _recognizer(system, hotwords)
    out = {}
    for name, items in sets(n).items():
        counter, found, slots, compute, audio = ErrorCounter(), 0, 0, 0.0, 0.0
        for u, slots_json in items:
            t0 = time.perf_counter()
            hyp = normalize_text(recognize(u))
            compute += time.perf_counter() - t0
            audio += load_audio(u.path).size / 16000
            if slots_json:
                hit, total = slot_hits(slots_json, hyp)
                found, slots = found + hit, slots + total
            else:
                counter.add(u.text, hyp)
        row = {"n": len(items), "rtf": compute / max(audio, 1e-9)}
        row.update({"slot_recall": found / max(slots, 1)} if slots else {"wer": counter.wer, "cer": counter.cer})
        out[name] = row
    return out


def dev_table(n: int, systems: tuple[str, ...] = SYSTEMS,
              hotwords: tuple[tuple[str, float], ...] = ()) -> tuple[str, dict]:  # fmt: skip
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = dict(zip(systems, pool.map(_score, systems, [n] * len(systems), [hotwords] * len(systems))))
    sets = list(next(iter(results.values())))
    rows = []
    for name in sets:
        metric = "slot_recall" if "slot_recall" in results[systems[0]][name] else "wer"
        rows.append((name, results[systems[0]][name]["n"], metric,
                     *(results[s][name][metric] for s in systems)))
    with_hotwords = f", hotwords {' '.join(f'{p}:{w:g}' for p, w in hotwords)}" if hotwords else ""
    text = table(f"Development sets (WER; slot-value recall for barista), {n} utterances a set at most, "
                 f"one thread each{with_hotwords}", ["dev set", "utts", "metric", *systems], rows)
    text += table("Real-time factor (median over the sets, one thread)", ["system", "median RTF"],
                  [(s, sorted(v["rtf"] for v in results[s].values())[len(sets) // 2]) for s in systems])
    return text, results


def final_latency(n: int) -> tuple[str, dict]:
    """Time to final beyond the endpoint: wall time of the 20 ms message whose processing emits the
    final, with and without the second pass, one thread, p50/p99 over real dev utterances."""
    from operators.audio import encode_audio
    from stream.app import DecodingConfig, build_pipeline
    from stream.events import Final, StreamConfig

    utts = [u for items in sets(n).values() for u, _ in items]
    rows, raw = [], {}
    for name, decoding in (("two-pass", DecodingConfig()), ("two-pass, greedy 2nd", DecodingConfig(second_pass_beam=1)),
                           ("first pass only", DecodingConfig(second_pass=False))):
        pipeline = build_pipeline(threads=1, decoding=decoding)
        times = []
        for u in utts:
            audio = np.concatenate([load_audio(u.path), np.zeros(16000, np.float32)])
            state = pipeline.create_stream("lat", StreamConfig(redact=()))
            for i in range(0, audio.size, 320):
                t0 = time.perf_counter()
                pipeline.accept_waveform(state, audio[i : i + 320], 16000)
                events = pipeline.decode_streams([state])
                if any(isinstance(e, Final) for e in events):
                    times.append(time.perf_counter() - t0)
            pipeline.finish(state)
        raw[name] = {"p50_ms": 1000 * percentile(times, 50), "p99_ms": 1000 * percentile(times, 99),
                     "finals": len(times)}
        rows.append((name, len(times), raw[name]["p50_ms"], raw[name]["p99_ms"]))
    return table("Time to final beyond the endpoint rule (processing of the message that ends the utterance, "
                 "one thread, ms)", ["decoding", "finals", "p50", "p99"], rows), raw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="utterances per dev set at most")
    p.add_argument("--only", choices=SYSTEMS, action="append", help="run only these systems")
    p.add_argument("--latency", type=int, default=0, metavar="N",
                   help="also measure time to final on N utterances a set")
    p.add_argument("--hotword", action="append", default=[], metavar="PHRASE[:WEIGHT]",
                   help="hotwords for callstream's systems, as serve's --hotword (repeatable)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from stream.app import parse_hotwords

    text, results = dev_table(args.n, tuple(args.only or SYSTEMS), parse_hotwords(args.hotword))
    if args.latency:
        lat_text, results["time_to_final"] = final_latency(args.latency)
        text += lat_text
    print(text)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
