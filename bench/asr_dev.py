"""The acoustic model's development table: every decoding mode and the Whisper peers, same audio, one run.

Columns: callstream streaming greedy CTC, CTC beam with the LMs, and two-pass
(the beam's finals decoded again by Whisper's decoder: base with a beam of 4,
the default; greedy; tiny.en); Whisper tiny.en and base offline over whole
utterances (greedy) as the peers. Rows: the real-speech dev splits, the held-out
synthetic voice and the barista set (real crowd-sourced sentences, scored by
slot-value recall since it has no verbatim transcripts), also as an 8 kHz µ-law
telephone line carries it. Each system runs in its own process, so two run side
by side on two cores. Development figures only: none of this audio is trained on.

    python -m bench.asr_dev [--n 100] [--latency 20] [--json]
    python -m bench.asr_dev --partials 50   # partials with the second pass on them or not
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

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
TELEPHONE_DIR = ROOT / "runs" / "dev" / "barista_dev_8k"


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
        out["barista_dev_8k"] = [(Utterance(telephone_copy(u.path), ""), slots) for u, slots in out["barista_dev"]]
    return out


def telephone_copy(path: Path) -> Path:
    """``path`` as a telephone line carries it, 8 kHz µ-law (as calls arrive), cached under
    ``runs/dev/barista_dev_8k``: the barista set is the only real speech in sentences, and call
    centres hear speech through that band."""
    out = TELEPHONE_DIR / f"{path.stem}.wav"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        x = soxr.resample(load_audio(path), 16000, 8000)
        tmp = out.with_suffix(".tmp")
        sf.write(tmp, np.clip(x, -1.0, 1.0), 8000, subtype="ULAW", format="WAV")
        tmp.replace(out)
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


@dataclass
class _Tally:
    """A dev set's score: slot-value recall where the utterances carry slots, else WER and CER."""

    counter: ErrorCounter = field(default_factory=ErrorCounter)
    found: int = 0
    slots: int = 0

    def add(self, u: Utterance, slots_json: str, hyp: str) -> None:
        if slots_json:
            hit, total = slot_hits(slots_json, hyp)
            self.found, self.slots = self.found + hit, self.slots + total
        else:
            self.counter.add(u.text, hyp)

    def scores(self) -> dict[str, float]:
        return {"slot_recall": self.found / self.slots} if self.slots else {"wer": self.counter.wer,
                                                                             "cer": self.counter.cer}

    def value(self) -> float:
        """Slot recall or WER: what the tables print."""
        return next(iter(self.scores().values()))


def _score(system: str, n: int, hotwords: tuple[tuple[str, float], ...] = (),
           names: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """``names``: only these dev sets (all when empty)."""
    recognize = _recognizer(system, hotwords)
    out = {}
    for name, items in sets(n).items():
        if names and name not in names:
            continue
        tally, compute, audio = _Tally(), 0.0, 0.0
        for u, slots_json in items:
            t0 = time.perf_counter()
            hyp = normalize_text(recognize(u))
            compute += time.perf_counter() - t0
            audio += load_audio(u.path).size / 16000
            tally.add(u, slots_json, hyp)
        out[name] = {"n": len(items), "rtf": compute / max(audio, 1e-9), **tally.scores()}
    return out


def dev_table(n: int, systems: tuple[str, ...] = SYSTEMS, hotwords: tuple[tuple[str, float], ...] = (),
              names: tuple[str, ...] = ()) -> tuple[str, dict]:
    k = len(systems)
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = dict(zip(systems, pool.map(_score, systems, [n] * k, [hotwords] * k, [names] * k)))
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


# (label, --second-pass-partials, live): live streams at real time with the refreshes on their
# own thread, as serve runs them; the others run as fast as they can, each refresh in its round.
PARTIAL_SETTINGS = (("off (CTC search)", 0.0, False), ("every 2 s", 2.0, False), ("every 1 s", 1.0, False),
                    ("every 0.5 s", 0.5, False), ("every 1 s, live", 1.0, True))


def _partials(pipeline, path: Path, live: bool = False) -> tuple[dict[str, str], float, float]:
    """Streams ``path`` in 20 ms messages (``live``: one every 20 ms of wall time): per utterance,
    its last partial before the final and its middle one (joined over the utterances); the
    compute (the recogniser's calls, and the refreshes' on their own thread) and the audio seconds."""
    from stream.events import Partial, StreamConfig

    x = load_audio(path)
    state = pipeline.create_stream("p", StreamConfig(sample_rate=16000, encoding="f32", redact=()))
    refreshes: list[float] = []
    pipeline.on_refresh = (lambda utterances, seconds: refreshes.append(seconds)) if live else None
    compute, events = 0.0, []
    start = time.perf_counter()
    for i in range(0, x.size, 320):
        if live:
            time.sleep(max(0.0, start + i / 16000 - time.perf_counter()))
        t0 = time.perf_counter()
        pipeline.accept_waveform(state, x[i : i + 320], 16000)
        events += pipeline.decode_streams([state])
        compute += time.perf_counter() - t0
    t0 = time.perf_counter()
    events += pipeline.finish(state)
    compute += time.perf_counter() - t0 + sum(refreshes)
    by_utt: dict[str, list[str]] = {}
    for e in events:
        if isinstance(e, Partial) and e.text:
            by_utt.setdefault(e.utterance_id, []).append(e.text)
    texts = {"last": " ".join(ps[-1] for ps in by_utt.values()),
             "middle": " ".join(ps[len(ps) // 2] for ps in by_utt.values())}
    return texts, compute, x.size / 16000


def partials_table(n: int) -> tuple[str, dict]:
    """Partials as a live caption shows them, with the second pass refreshing them every few
    seconds or not (``--second-pass-partials``). One process, one thread for the recogniser (and
    one for the live setting's refreshes): the settings take turns on each utterance, so that
    their costs are compared in the same minutes."""
    from stream.app import DecodingConfig, build_pipeline

    pipelines = {}
    for label, interval, live in PARTIAL_SETTINGS:
        pipelines[label] = build_pipeline(threads=1, decoding=DecodingConfig(partial_second_pass_s=interval))
        if live:
            pipelines[label].refresh_in_thread()
    results: dict[str, dict] = {label: {} for label in pipelines}
    for name in ("barista_dev", "heldout_voice"):
        items = sets(n).get(name, [])
        tallies = {label: {"last": _Tally(), "middle": _Tally()} for label in pipelines}
        compute = {label: 0.0 for label in pipelines}
        audio = 0.0
        for u, slots_json in items:
            for label, interval, live in PARTIAL_SETTINGS:
                texts, seconds, audio_s = _partials(pipelines[label], u.path, live)
                compute[label] += seconds
                for which, text in texts.items():
                    tallies[label][which].add(u, slots_json, normalize_text(text))
            audio += audio_s
        if items:
            for label, t in tallies.items():
                results[label][name] = {"rtf": compute[label] / max(audio, 1e-9), **{w: t[w].value() for w in t}}
    for pipeline in pipelines.values():
        if pipeline.refresh_executor is not None:
            pipeline.refresh_executor.shutdown()
    rows = []
    for label, r in results.items():
        b, h = r.get("barista_dev", {}), r.get("heldout_voice", {})
        rows.append((label, b.get("last", math.nan), b.get("middle", math.nan), b.get("rtf", math.nan),
                     h.get("last", math.nan), h.get("middle", math.nan), h.get("rtf", math.nan)))
    text = table(f"Partials (--second-pass-partials), {n} utterances a set at most, streamed in 20 ms messages, one "
                 "thread (live: at real time, the refreshes on a thread of their own, as serve runs them): of each "
                 "utterance, the last partial before its final and the middle one; barista_dev slot recall, "
                 "held-out voice WER", ["second pass on partials", "barista last", "barista middle", "barista RTF",
                                        "heldout WER last", "heldout WER middle", "heldout RTF"], rows)
    return text, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="utterances per dev set at most")
    p.add_argument("--only", choices=SYSTEMS, action="append", help="run only these systems")
    p.add_argument("--latency", type=int, default=0, metavar="N",
                   help="also measure time to final on N utterances a set")
    p.add_argument("--set", action="append", default=[], metavar="NAME",
                   help="only this dev set (repeatable; e.g. barista_dev_8k)")
    p.add_argument("--partials", type=int, default=0, metavar="N",
                   help="only the partials table (second pass on partials or not) on N utterances a set")
    p.add_argument("--hotword", action="append", default=[], metavar="PHRASE[:WEIGHT]",
                   help="hotwords for callstream's systems, as serve's --hotword (repeatable)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from stream.app import parse_hotwords

    known = list(sets(1))
    if unknown := sorted(set(args.set) - set(known)):
        p.error(f"--set: no dev set {', '.join(unknown)} (there are: {', '.join(known)})")
    if args.partials:
        text, results = partials_table(args.partials)
        print(text)
        if args.json:
            print(json.dumps(results))
        return 0
    text, results = dev_table(args.n, tuple(args.only or SYSTEMS), parse_hotwords(args.hotword), tuple(args.set))
    if args.latency:
        lat_text, results["time_to_final"] = final_latency(args.latency)
        text += lat_text
    print(text)
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
