"""Spoken redaction leaks: generated calls rendered by TTS voices and streamed through the recogniser.

Each call of ``models.redaction_eval.generate(spoken=True)`` is rendered turn
by turn (agent: piper's joe; customer: the held-out festival voice, flite and
espeak voices in turn) onto two channels of an 8 kHz mu-law call, as a
call-centre recorder writes it. The call is streamed once with the default
redaction and once raw. A leak is 6 or more consecutive digits of the call's
secret in one event's text (``models.redaction_eval.leaks``): partials,
finals (text, words, n-best) and enriched events are all read.

    python -m bench.redaction --calls 20
    python -m bench --only redaction
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import soxr

from bench.common import calls_main, table
from models.train.tts import SAMPLE_RATE, speak
from models.redaction_eval import event_texts, generate, leaks
from operators.audio import encode_audio
from stream.app import build_pipeline
from stream.events import Enriched, Event, Final, Partial, StreamConfig
from stream.pipeline import Pipeline

__all__ = ["CALL_RATE", "main", "render", "run", "stream_call"]

CALL_RATE = 8000
_AGENT = ("piper", "en_US-joe-medium")
_CUSTOMERS = (("festival", "ked_diphone"), ("flite", "slt"), ("espeak", "en-us+m3"), ("flite", "rms"),
              ("espeak", "en-us+f2"))  # fmt: skip


def render(turns: Sequence[tuple[str, str]], index: int,
           gap_s: float = 0.9) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The call as stereo float32 (T, 2) at 8 kHz, agent left and customer right, its ``(channel, text)``
    turns in order, and each turn's span in seconds. ``index`` picks the customer's voice."""
    customer = _CUSTOMERS[index % len(_CUSTOMERS)]
    cursor, placed, spans = int(0.5 * CALL_RATE), [], []
    for k, (channel, text) in enumerate(turns):
        engine, voice = _AGENT if channel == "agent" else customer
        audio = soxr.resample(speak(text, engine, voice, seed=index * 100 + k), SAMPLE_RATE, CALL_RATE)
        placed.append((0 if channel == "agent" else 1, cursor, audio))
        spans.append((cursor / CALL_RATE, (cursor + audio.size) / CALL_RATE))
        cursor += audio.size + int(gap_s * CALL_RATE)
    stereo = np.zeros((cursor, 2), np.float32)
    for ch, start, audio in placed:
        stereo[start : start + audio.size, ch] = audio
    return stereo, spans


def stream_call(pipeline: Pipeline, audio: np.ndarray, redact: tuple[str, ...]) -> list[Event]:
    """Every event of one stereo 8 kHz call sent as mu-law in 100 ms chunks, with the given redaction modes."""
    state = pipeline.create_stream("call", StreamConfig(sample_rate=CALL_RATE, encoding="mulaw", channels=2,
                                                        redact=redact))
    step = CALL_RATE // 10
    events: list[Event] = []
    for i in range(0, audio.shape[0], step):
        pipeline.accept_bytes(state, encode_audio(audio[i : i + step], "mulaw"))
        events += pipeline.decode_streams([state])
    return events + pipeline.finish(state)


def run(calls: int = 20, seed: int = 0) -> tuple[str, dict[str, float]]:
    """The table and figures of ``calls`` spoken calls (half cards, half phone numbers)."""
    pipeline = build_pipeline(enrich=True)
    kinds = ("partial", "final", "enriched")
    counts = {f"{mode}_{k}_{what}": 0 for mode in ("redacted", "raw") for k in kinds for what in ("events", "leaks")}
    calls_leaking = {"redacted": 0, "raw": 0}
    audio_s = 0.0
    t0 = time.perf_counter()
    for index, call in enumerate(generate(calls, seed, spoken=True)):
        audio, _ = render(call.finals, index)
        audio_s += audio.shape[0] / CALL_RATE
        for mode, redact in (("redacted", StreamConfig().redact), ("raw", ())):
            leaked = False
            for ev in stream_call(pipeline, audio, redact):
                kind = {Partial: "partial", Final: "final", Enriched: "enriched"}.get(type(ev))
                if kind is None:
                    continue
                counts[f"{mode}_{kind}_events"] += 1
                hit = any(leaks(t, call.secret) for t in event_texts(ev))
                counts[f"{mode}_{kind}_leaks"] += hit
                leaked |= hit
            calls_leaking[mode] += leaked
    rows = [
        [mode, calls_leaking[mode], calls,
         *(f"{counts[f'{mode}_{k}_leaks']}/{counts[f'{mode}_{k}_events']}" for k in kinds)]
        for mode in ("redacted", "raw")
    ]
    text = table(
        f"Spoken redaction leaks: {calls} generated calls, {audio_s / 60:.1f} min of 8 kHz stereo mu-law "
        f"(6+ digits of the card or phone number in one event; {time.perf_counter() - t0:.0f} s)",
        ["redaction", "calls leaking", "calls", "partials leaking", "finals leaking", "enriched leaking"],
        rows,
    )
    result = {"calls": calls, "audio_minutes": round(audio_s / 60, 2),
              "calls_leaking": calls_leaking["redacted"], "raw_calls_leaking": calls_leaking["raw"], **counts}
    return text, result


def main(argv: list[str] | None = None) -> int:
    return calls_main(argv, "python -m bench.redaction", __doc__, run, 20)


if __name__ == "__main__":
    raise SystemExit(main())
