"""The benchmark suite: ``callstream bench [--quick] [--json] [--only AREA]``, ``python -m bench``, ``make bench``.

Prints one table per area and writes the raw numbers to ``--out``. With
``--json`` the last line is one JSON object of the headline figures. Peers
need the ``[bench]`` extra; the dev-audio areas read ``../shared/data`` beside
the source tree. Absolute times are this machine's; read the ratios and the
medians.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the callstream command does (stream/cli.py)

import argparse
import json
import platform
import time
from pathlib import Path

__all__ = ["AREAS", "add_arguments", "main", "run"]

AREAS = ("acoustic", "decoder", "hotwords", "streams", "websocket", "kafka", "spoken-intent", "peers", "asr-dev",
         "redaction", "calls", "soak")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from models.runtime import SECOND_PASS_MODELS

    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes)")
    p.add_argument("--json", action="store_true", help="end with one JSON line of headline figures")
    p.add_argument("--only", choices=AREAS, action="append", help="run only these areas (repeatable)")
    p.add_argument("--out", type=Path, default=Path("runs") / "bench" / "bench.json",
                   help="the raw figures (JSON), relative to the current folder")
    p.add_argument("--serve-threads", type=int, default=1,
                   help="onnxruntime threads of the serving runs (streams, websocket); the CTC decoding "
                        "thread takes another core")
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                   help="serving processes of the concurrent-streams run (besides the one-process run); "
                        "default: one per core")
    p.add_argument("--soak-streams", type=int, default=200,
                   help="soak: real-time streams opened (--quick: 10)")
    p.add_argument("--soak-max-streams", type=int, default=None,
                   help="soak: the server's --max-streams (default: serve's own; --quick: 10); the overload run "
                        "opens 1.5 times as many")
    p.add_argument("--soak-s", type=float, default=600.0, help="soak: seconds each stream runs (--quick: 30)")
    p.add_argument("--soak-burn", type=float, default=0.0, metavar="CORES",
                   help="soak: a neighbour process load of this many cores during both runs, as another job "
                        "on the machine (the server then sheds streams it cannot keep up with)")
    p.add_argument("--soak-max-lag-s", type=float, default=None,
                   help="soak: the server's --max-lag-s (default: serve's own; 0: no shedding, for comparison)")
    p.add_argument("--soak-second-pass-model", choices=SECOND_PASS_MODELS, default=None,
                   help="soak: the server's --second-pass-model (default: serve's own)")
    p.add_argument("--soak-second-pass-beam", type=int, default=None, choices=range(1, 17), metavar="N",
                   help="soak: the server's --second-pass-beam (default: serve's own)")
    p.add_argument("--soak-second-pass-partials", type=float, default=None, metavar="SECONDS",
                   help="soak: the server's --second-pass-partials (default: serve's own, 1 s; 0: off)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    areas = args.only or list(AREAS)
    quick = args.quick
    raw: dict[str, object] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "quick": quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}}
    headline: dict[str, object] = {}
    t_start = time.perf_counter()

    if "acoustic" in areas:
        from bench.acoustic import full_pipeline_rtf, single_stream_rtf

        text, r = single_stream_rtf(8.0 if quick else 30.0)
        r.update(full_pipeline_rtf(8.0 if quick else 30.0))
        print(text + f"whole pipeline (features + acoustic + beam search with LM), 1 thread: "
              f"RTF {r['pipeline_rtf']:.4f}\n", flush=True)
        raw["acoustic"] = r
        headline.update(rtf_int8_1thread=r["int8_t1"], rtf_fp32_1thread=r["fp32_t1"],
                        int8_speedup=r["int8_speedup_t1"], pipeline_rtf=r["pipeline_rtf"])
    if "decoder" in areas:
        from bench.decoder import compare as compare_decoders

        text, r = compare_decoders(10 if quick else 60, (4, 16) if quick else (4, 8, 16, 32))
        print(text, flush=True)
        raw["decoder"] = r
        headline["beam16_lm_ms_per_audio_s"] = r["ours_b16_lm"]["ms_per_audio_s"]
    if "hotwords" in areas:
        from bench.hotwords import compare as compare_hotwords

        text, r = compare_hotwords(5 if quick else 40, templates=2 if quick else 5)
        print(text, flush=True)
        raw["hotwords"] = r
        headline.update(hotword_recall_ratio=r["recall_ratio"], hotword_dev_wer_change_points=r["dev_wer_change_points"])
    if "streams" in areas:
        from bench.acoustic import concurrent_streams

        levels = [1, 8, 32] if quick else [1, 8, 32, 64, 128]
        raw["streams"] = {}
        for processes in [args.processes] if quick else sorted({1, args.processes}):
            text, r = concurrent_streams(levels, 3.0 if quick else 10.0, search=not quick,
                                         threads=args.serve_threads, processes=processes)
            print(text, flush=True)
            raw["streams"][f"processes_{processes}"] = r
            headline[f"max_realtime_streams_{processes}proc"] = r["max_realtime_streams"]
        headline["max_realtime_streams"] = max(r["max_realtime_streams"] for r in raw["streams"].values())
    if "websocket" in areas:
        from bench.e2e import websocket_latency

        text, r = websocket_latency(4 if quick else 16, 8.0 if quick else 20.0, threads=args.serve_threads)
        print(text, flush=True)
        raw["websocket"] = r
        headline.update({k: r[k] for k in ("first_partial_p50_ms", "final_after_speech_p50_ms",
                                           "final_after_speech_p99_ms", "final_after_rule_p99_ms", "enrich_p50_ms")})
    if "kafka" in areas:
        from bench.kafka import transcript_to_enriched

        text, r = transcript_to_enriched(100 if quick else 1000)
        print(text, flush=True)
        raw["kafka"] = r
        headline.update(kafka_enriched_p50_ms=r["p50_ms"], kafka_enriched_p99_ms=r["p99_ms"],
                        kafka_records_per_s=r["records_per_s"])
    if "spoken-intent" in areas:
        from bench.spoken_intent import compare as spoken_intent

        text, r = spoken_intent(10 if quick else 100)
        print(text, flush=True)
        raw["spoken_intent"] = r
        headline.update(intent_accuracy_typed=r["typed"]["accuracy"], intent_accuracy_spoken=r["spoken"]["accuracy"],
                        spoken_intent_asr_wer=r["asr_wer"])
    if "peers" in areas:
        from bench.peers import compare

        text, r = compare(15 if quick else 100)
        print(text, flush=True)
        raw["peers"] = r
        for name, v in r["summary"].items():
            key = name.split(" (")[0].split()[0].lower().replace(".", "")
            key = {"whisper": "whisper_tiny_en"}.get(key, key)
            headline.setdefault(f"{key}_mean_wer", round(v["mean_wer"], 4))
            headline.setdefault(f"{key}_median_rtf", round(v["median_rtf"], 4))
    if "asr-dev" in areas:
        from bench.asr_dev import dev_table, final_latency

        text, r = dev_table(20 if quick else 200)
        lat_text, r["time_to_final"] = final_latency(5 if quick else 20)
        print(text + lat_text, flush=True)
        raw["asr_dev"] = r
        headline.update(barista_slot_recall=r["two-pass"]["barista_dev"]["slot_recall"],
                        time_to_final_p50_ms=r["time_to_final"]["two-pass"]["p50_ms"])
    if "redaction" in areas:
        from bench.redaction import run as redaction_leaks

        text, r = redaction_leaks(4 if quick else 40)
        print(text, flush=True)
        raw["redaction"] = r
        headline.update(redaction_calls_leaking=r["calls_leaking"], redaction_raw_calls_leaking=r["raw_calls_leaking"])
    if "calls" in areas:
        from bench.calls import run as generated_calls

        text, r = generated_calls(4 if quick else 40)
        print(text, flush=True)
        raw["calls"] = r
        headline.update(calls_question_wer=r["ours"]["question_wer"],
                        calls_digit_error_rate=r["ours"]["digit_error_rate"],
                        calls_first_final_intent=r["first_final_intent"])
    if "soak" in areas:
        from bench.soak import soak
        from stream.websocket import MAX_STREAMS

        streams, seconds, limit = (10, 30.0, 10) if quick else (args.soak_streams, args.soak_s,
                                                                  args.soak_max_streams or MAX_STREAMS)
        serve_args = ["--threads", str(args.serve_threads)]
        if args.soak_second_pass_beam is not None:
            serve_args += ["--second-pass-beam", str(args.soak_second_pass_beam)]
        if args.soak_second_pass_model is not None:
            serve_args += ["--second-pass-model", args.soak_second_pass_model]
        if args.soak_second_pass_partials is not None:
            serve_args += ["--second-pass-partials", str(args.soak_second_pass_partials)]
        if args.soak_max_lag_s is not None:
            serve_args += ["--max-lag-s", str(args.soak_max_lag_s)]
        text, r = soak(streams, seconds, overload_seconds=min(seconds, 120.0), serve_args=serve_args, max_streams=limit,
                       burn=args.soak_burn)
        print(text, flush=True)
        raw["soak"] = r
        s, o = r["soak"], r["overload"]
        headline.update(soak_streams=streams, soak_max_streams=limit, soak_admitted=s["admitted"], soak_s=seconds,
                        soak_final_p99_ms=s["final_p99_ms"],
                        soak_audio_sent_s=s["audio_sent_s"], soak_audio_accounted_s=s["audio_accounted_s"],
                        soak_utterances_without_one_final=s["utterances_with_other_than_one_final"],
                        soak_errors=s["error_count"], soak_shed=s["shed"], overload_shed=o["shed"],
                        soak_rss_growth_mb_per_hour=s["rss_growth_mb_per_hour"],
                        soak_loop_lag_p99_ms=s["loop_lag_p99_ms"], overload_admitted=o["admitted"],
                        overload_refused=sum(o["refused"].values()), overload_final_p99_ms=o["final_p99_ms"])
    raw["wall_s"] = time.perf_counter() - t_start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(raw, indent=1, default=float))
    print(f"raw figures: {args.out} ({raw['wall_s']:.0f} s)")
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in headline.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
