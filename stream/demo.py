"""``callstream demo``: the embedded default on the bundled sample call.

The call (stereo, 8 kHz, mu-law; agent left, customer right) is sent through
the in-process pipeline in 20 ms frames, as a telephony source would send
it, and every event is printed as it comes out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import soundfile as sf

from models.evaluate import read_audio
from models.runtime import ASSETS
from operators.audio import encode_audio
from stream.app import add_decoding_arguments, build_pipeline, decoding_from_args
from stream.events import EndOfStream, Enriched, Event, Final, Partial, StreamConfig

__all__ = ["add_arguments", "format_event", "run"]

FRAME_S = 0.02


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def format_event(event: Event) -> str | None:
    """One human-readable line per event (None for events not worth a line)."""
    if isinstance(event, Partial):
        return f"  ~ {event.channel:>8} | {event.text}"
    if isinstance(event, Final):
        words = " ".join(f"{w.text}({w.confidence:.2f})" for w in event.words)
        return f"[{_clock(event.start)}-{_clock(event.end)}] {event.channel:>8} | {event.text}\n{'':>24}{words}"
    if isinstance(event, Enriched):
        parts = []
        if event.intent is not None:
            parts.append(f"intent={event.intent.label} ({event.intent.score:.2f})")
        if event.flags.flagged:
            parts.append(f"flags={','.join(event.flags.flagged)}")
        if event.redacted_text != event.transcript.text:
            parts.append(f"redacted: {event.redacted_text}")
        return f"{'':>24}enriched: {'; '.join(parts) or 'nothing flagged'}"
    if isinstance(event, EndOfStream):
        return f"-- end of stream {event.stream_id} ({event.audio_seconds:.1f} s of audio)"
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--audio", type=Path, default=ASSETS / "sample_call.wav", help="a WAV/FLAC call (any rate)")
    p.add_argument("--model", type=Path, help="ONNX acoustic model (default: the bundled int8 model)")
    p.add_argument("--realtime", action="store_true", help="send audio at real-time pace")
    p.add_argument("--partials", action="store_true", help="print every partial, not just finals")
    add_decoding_arguments(p)


def run(args: argparse.Namespace) -> int:
    audio, rate = read_audio(args.audio)
    pipeline = build_pipeline(model=args.model, decoding=decoding_from_args(args), enrich=True)
    channels = audio.shape[1]
    encoding = "mulaw" if sf.info(args.audio).subtype == "ULAW" else "pcm16"
    config = StreamConfig(sample_rate=int(rate), encoding=encoding, channels=channels)
    state = pipeline.create_stream("demo-call", config)
    print(f"callstream demo: {args.audio.name}, {audio.shape[0] / rate:.1f} s, {channels} channel(s), "
          f"{rate} Hz {encoding}; model {pipeline.acoustic.model.path.name} on {pipeline.acoustic.model.provider}")
    step = int(rate * FRAME_S)
    t0 = time.perf_counter()
    last_partial: dict[str, str] = {}
    for i in range(0, audio.shape[0], step):
        pipeline.accept_waveform(state, audio[i : i + step], rate)
        events = pipeline.decode_streams([state])
        if args.realtime:
            time.sleep(max(0.0, t0 + (i + step) / rate - time.perf_counter()))
        _show(events, args.partials, last_partial)
    _show(pipeline.finish(state), args.partials, last_partial)
    elapsed = time.perf_counter() - t0
    print(f"-- processed {audio.shape[0] / rate:.1f} s of audio in {elapsed:.2f} s "
          f"(real-time factor {elapsed / (audio.shape[0] / rate):.3f})")
    return 0


def _show(events: list[Event], partials: bool, last: dict[str, str]) -> None:
    for ev in events:
        if isinstance(ev, Partial):
            if not partials or last.get(ev.channel) == ev.text:
                continue
            last[ev.channel] = ev.text
        line = format_event(ev)
        if line is not None:
            print(line)
    sys.stdout.flush()
