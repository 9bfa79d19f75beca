"""Events as the lines a person reads: what ``callstream demo`` and ``callstream kafka-tail`` print."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from stream.events import EndOfStream, Enriched, Event, Final, Partial

__all__ = ["EventPrinter", "format_event"]


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def format_event(event: Event, *, with_transcript: bool = False) -> str | None:
    """One human-readable line per event (None for events not worth a line).

    ``with_transcript``: an enriched event is shown after the lines of its final, for readers
    that see only enriched events (the Kafka enriched topic).
    """
    if isinstance(event, Partial):
        return f"  ~ {event.channel:>8} | {event.text}"
    if isinstance(event, Final):
        words = " ".join(f"{w.text}({w.confidence:.2f})" for w in event.words)
        return f"[{_clock(event.start)}-{_clock(event.end)}] {event.channel:>8} | {event.text}\n{'':>24}{words}"
    if isinstance(event, Enriched):
        parts = []
        if event.intent is not None:
            unsure = ", needs confirmation" if event.intent.needs_confirmation else ""
            parts.append(f"intent={event.intent.label} ({event.intent.score:.2f}{unsure})")
        if event.flags.flagged:
            parts.append(f"flags={','.join(event.flags.flagged)}")
        if event.redacted_text != event.transcript.text:
            parts.append(f"redacted: {event.redacted_text}")
        line = f"{'':>24}enriched: {'; '.join(parts) or 'nothing flagged'}"
        return f"{format_event(event.transcript)}\n{line}" if with_transcript else line
    if isinstance(event, EndOfStream):
        return f"-- end of stream {event.stream_id} ({event.audio_seconds:.1f} s of audio)"
    return None


def _stream_id(event: Event) -> str | None:
    if isinstance(event, Enriched):
        return event.transcript.stream_id
    return getattr(event, "stream_id", None)


class EventPrinter:
    """Prints events as they come, skipping a partial that repeats its channel's last one.

    ``partials``: print partials at all. ``with_transcript``: see ``format_event``.
    ``stream_headers``: a line ``== STREAM_ID`` whenever the events switch to another stream,
    for a reader that sees several calls interleaved.
    """

    def __init__(self, *, partials: bool = False, with_transcript: bool = False, stream_headers: bool = False,
                 out: TextIO | None = None) -> None:
        self.partials = partials
        self.with_transcript = with_transcript
        self.stream_headers = stream_headers
        self.out = out
        self._last_partial: dict[tuple[str, str], str] = {}
        self._stream: str | None = None

    def show(self, events: Iterable[Event]) -> None:
        out = self.out or sys.stdout
        for ev in events:
            if isinstance(ev, Partial):
                key = (ev.stream_id, ev.channel)
                if not self.partials or self._last_partial.get(key) == ev.text:
                    continue
                self._last_partial[key] = ev.text
            line = format_event(ev, with_transcript=self.with_transcript)
            if line is None:
                continue
            stream = _stream_id(ev)
            if self.stream_headers and stream != self._stream:
                print(f"== {stream}", file=out)
            self._stream = stream
            print(line, file=out)
        out.flush()
