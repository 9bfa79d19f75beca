"""Captions from finals: WebVTT and SRT, timed by the words (``callstream transcribe --format vtt|srt``).

Pure: finals in, text out. Each final gives one cue, from its first word's
start to its last word's end. A final that would last longer than
``max_cue_s``, or need more than ``max_lines`` lines of ``max_line_chars``, is
cut at word boundaries into several cues, each timed by its own words. A final
without word timings spreads its words evenly over its start and end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stream.events import Final, Word

__all__ = ["CaptionConfig", "Cue", "cues", "srt", "timestamp", "webvtt"]


@dataclass(frozen=True)
class CaptionConfig:
    max_cue_s: float = 7.0  # s on screen at most, unless one word lasts longer
    max_line_chars: int = 42  # characters per line, unless one word is longer
    max_lines: int = 2


@dataclass(frozen=True)
class Cue:
    start: float  # s
    end: float  # s
    lines: tuple[str, ...]


def timestamp(seconds: float, decimal: str = ".") -> str:
    """``HH:MM:SS.mmm`` (WebVTT), or with ``decimal=","`` ``HH:MM:SS,mmm`` (SRT); to the nearest ms."""
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{decimal}{ms % 1000:03d}"


def _fits(words: Sequence[str], cfg: CaptionConfig) -> bool:
    return len(words) == 1 or len(" ".join(words)) <= cfg.max_line_chars


def _lines(words: Sequence[str], cfg: CaptionConfig) -> tuple[str, ...] | None:
    """The words laid out in at most ``cfg.max_lines`` lines, or None when they do not fit.

    Two lines are balanced (the longer as short as it can be); more are filled greedily.
    """
    if _fits(words, cfg):
        return (" ".join(words),)
    if cfg.max_lines == 2:
        fitting = [(" ".join(words[:k]), " ".join(words[k:])) for k in range(1, len(words))
                   if _fits(words[:k], cfg) and _fits(words[k:], cfg)]
        return min(fitting, key=lambda s: (max(len(s[0]), len(s[1])), len(s[0]))) if fitting else None
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= cfg.max_line_chars:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return tuple(lines) if len(lines) <= cfg.max_lines else None


def _words(final: Final) -> tuple[Word, ...]:
    if final.words:
        return final.words
    texts = final.text.split()
    step = (final.end - final.start) / max(len(texts), 1)
    return tuple(Word(t, final.start + i * step, final.start + (i + 1) * step, 0.0) for i, t in enumerate(texts))


def cues(finals: Iterable[Final], config: CaptionConfig | None = None) -> list[Cue]:
    """The cues of the finals, in order of start time; finals without words or text give none."""
    cfg = config or CaptionConfig()
    out: list[Cue] = []
    for final in finals:
        group: list[Word] = []
        lines: tuple[str, ...] = ()
        for w in _words(final):
            grown = _lines([*(g.text for g in group), w.text], cfg)
            if group and (grown is None or w.end - group[0].start > cfg.max_cue_s):
                out.append(Cue(group[0].start, group[-1].end, lines))
                group, grown = [], (w.text,)
            group.append(w)
            lines = grown or (w.text,)
        if group:
            out.append(Cue(group[0].start, group[-1].end, lines))
    return sorted(out, key=lambda c: (c.start, c.end))


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webvtt(cues: Iterable[Cue]) -> str:
    """A WebVTT file. ``&``, ``<`` and ``>`` are escaped, so cue text can hold neither tags nor ``-->``."""
    blocks = [f"{timestamp(c.start)} --> {timestamp(c.end)}\n" + "\n".join(_vtt_escape(line) for line in c.lines)
              for c in cues]
    return "WEBVTT\n\n" + "".join(b + "\n\n" for b in blocks)


def srt(cues: Iterable[Cue]) -> str:
    """A SubRip file: numbered cues. SRT has no escapes; cue text never holds a blank line."""
    return "".join(f"{i}\n{timestamp(c.start, ',')} --> {timestamp(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
                   for i, c in enumerate(cues, 1))
