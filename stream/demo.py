"""``callstream demo``: the embedded default on the bundled sample call.

The call (stereo, 8 kHz, mu-law; agent left, customer right) is sent through
the in-process pipeline in 20 ms frames, as a telephony source would send
it, and every event is printed as it comes out. ``--kafka`` sends it through
the Kafka flow instead (``stream.kafka_demo``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from models.evaluate import read_call
from models.runtime import ASSETS
from stream.app import add_decoding_arguments, build_pipeline, decoding_from_args
from stream.display import EventPrinter
from stream.events import StreamConfig

__all__ = ["add_arguments", "run"]

FRAME_S = 0.02


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", type=Path, default=ASSETS / "sample_call.wav", help="a WAV/FLAC call (any rate)")
    p.add_argument("--model", type=Path, help="ONNX acoustic model (default: the bundled int8 model)")
    p.add_argument("--realtime", action="store_true", help="send audio at real-time pace")
    p.add_argument("--partials", action="store_true", help="print every partial, not just finals")
    p.add_argument("--kafka", action="store_true",
                   help="through Kafka: a local broker, the ASR worker and the Faust agents, stopped at the end")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="with --kafka: seconds to wait for every final to be enriched")
    add_decoding_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.kafka:
        from stream.kafka_demo import run_kafka

        return run_kafka(args)
    audio, rate, encoding = read_call(args.audio)
    pipeline = build_pipeline(model=args.model, decoding=decoding_from_args(args), enrich=True)
    channels = audio.shape[1]
    config = StreamConfig(sample_rate=rate, encoding=encoding, channels=channels)
    state = pipeline.create_stream("demo-call", config)
    print(f"callstream demo: {args.audio.name}, {audio.shape[0] / rate:.1f} s, {channels} channel(s), "
          f"{rate} Hz {encoding}; model {pipeline.acoustic.model.path.name} on {pipeline.acoustic.model.provider}")
    step = int(rate * FRAME_S)
    printer = EventPrinter(partials=args.partials)
    t0 = time.perf_counter()
    for i in range(0, audio.shape[0], step):
        pipeline.accept_waveform(state, audio[i : i + step], rate)
        events = pipeline.decode_streams([state])
        if args.realtime:
            time.sleep(max(0.0, t0 + (i + step) / rate - time.perf_counter()))
        printer.show(events)
    printer.show(pipeline.finish(state))
    elapsed = time.perf_counter() - t0
    print(f"-- processed {audio.shape[0] / rate:.1f} s of audio in {elapsed:.2f} s "
          f"(real-time factor {elapsed / (audio.shape[0] / rate):.3f})")
    return 0
