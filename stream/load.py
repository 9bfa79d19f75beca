"""Whether the recogniser keeps up with real time: measured admission and load shedding.

A fixed ``--max-streams`` is a capacity measured on a quiet machine. When the
machine gets slower (another process on the cores, a slower host, longer
utterances for the second pass) the admitted streams fall behind together:
each one's audio waits longer and longer for the recogniser. This module
watches what the server can see and says when to refuse new streams and when
to shed admitted ones, so that the rest keep real time.

Two signals, both needed:

- **busy**: the share of the last ``window_s`` the recogniser thread spent
  working. A recogniser with spare time is not the reason anyone is late (a
  client that pauses, or a slow network, is late on its own).
- **lag** per real-time stream: wall time since its first audio minus the
  seconds of audio the server has taken from it. Audio the server has not
  read waits in the socket, so a stream the server cannot serve fast enough
  gains lag at the rate it falls behind. Clients that send faster than real
  time (files) have negative lag and never count as behind. The server
  leaves out streams younger than ``window_s``: a stream's start is not a
  trend, and many starting at once are a burst the recogniser absorbs.

``behind`` (refuse new streams): busy, and the median stream's lag grows, or
it is over ``max_lag_s``. ``shed``: busy, and the median lag over
``max_lag_s`` and not falling. Then the newest streams go: the share that the
lag's growth says are too many (a median stream losing ``s`` seconds a second
gets ``1 - s`` of real time, so about ``N * s`` streams are too many), or one
when the lag holds still (the rest need room to catch up); at most half at
once and once per ``window_s``, so that the next decision sees the load after
this one.

Pure: the server passes the time, the recogniser's busy seconds and the
streams' lags; the tests drive it with made-up clocks.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["LoadConfig", "LoadMonitor"]


@dataclass(frozen=True)
class LoadConfig:
    # A median lag past this, not falling, sheds streams; 0: never refuse or shed. At 1 s, a soak
    # at the measured capacity shed 6 of 36 streams while they connected (tiny.en's second pass);
    # its beam alone makes finals 1.5 s late at p99 there.
    max_lag_s: float = 2.0
    window_s: float = 5.0  # the busy share and the lag growth are measured over this long
    busy: float = 0.9  # the recogniser's share of working time that counts as saturated
    growth: float = 0.02  # lag gained per second (2% of real time) that counts as falling behind
    # Below this busy share the recogniser has room for optional work: partials from the second
    # pass (``--second-pass-partials``), which cost about as much again as the rest of decoding.
    room: float = 0.5


@dataclass
class _Sample:
    at: float
    busy_s: float
    lags: Mapping[str, float]


@dataclass
class LoadMonitor:
    config: LoadConfig = field(default_factory=LoadConfig)
    _samples: deque[_Sample] = field(default_factory=deque)
    _last_shed: float = -math.inf
    busy_share: float = 0.0  # over the last window, for /metrics
    median_lag: float = 0.0
    median_growth: float = 0.0

    def observe(self, now: float, busy_s: float, lags: Mapping[str, float]) -> None:
        """One sample: ``busy_s``, the recogniser's total working seconds so far; ``lags``, each
        real-time stream's lag by stream id (sorted by admission, oldest first)."""
        self._samples.append(_Sample(now, busy_s, dict(lags)))
        while len(self._samples) > 2 and now - self._samples[1].at >= self.config.window_s:
            self._samples.popleft()
        first = self._samples[0]
        span = now - first.at
        self.busy_share = (busy_s - first.busy_s) / span if span > 0 else 0.0
        self.median_lag = statistics.median(lags.values()) if lags else 0.0
        common = [sid for sid in lags if sid in first.lags]
        self.median_growth = (statistics.median((lags[s] - first.lags[s]) / span for s in common)
                              if span > 0 and common else 0.0)

    def _full_window(self) -> bool:
        return len(self._samples) > 1 and self._samples[-1].at - self._samples[0].at >= 0.8 * self.config.window_s

    def has_room(self) -> bool:
        """Whether optional work may run: the recogniser was busy less than ``room`` of the last window."""
        return self.busy_share < self.config.room

    def behind(self, now: float) -> bool:
        """Refuse new streams: the recogniser is saturated and the streams are late and not catching
        up, or streams were shed within the last window (the load after it is not measured yet)."""
        cfg = self.config
        if cfg.max_lag_s <= 0:
            return False
        if now - self._last_shed < cfg.window_s:
            return True
        if not self._full_window() or self.busy_share < cfg.busy:
            return False
        return self.median_growth > cfg.growth or self.median_lag > cfg.max_lag_s

    def to_shed(self, now: float) -> list[str]:
        """The streams to end now, newest first: none unless the median stream is past
        ``max_lag_s`` and not catching up."""
        cfg = self.config
        if (cfg.max_lag_s <= 0 or not self._full_window() or self.busy_share < cfg.busy
                or self.median_lag <= cfg.max_lag_s or self.median_growth < -cfg.growth
                or now - self._last_shed < cfg.window_s):
            return []
        streams = list(self._samples[-1].lags)
        n = min(len(streams) // 2, max(1, math.ceil(len(streams) * min(self.median_growth, 1.0))))
        if n == 0:
            return []
        self._last_shed = now
        self._samples.clear()  # the next decision measures the load after this one
        return streams[::-1][:n]

