"""Energy voice-activity tracking at 10 ms resolution: how long has the audio been quiet?

The acoustic model sees audio in 320 ms chunks, so an endpoint found from its
blank frames alone waits for the end of the chunk that completes the silence:
up to a chunk late. The energy of the audio is known every 10 ms, so the
pipeline lets it vouch for the audio the model has not seen yet
(``Pipeline._front``).

A frame is quiet when its level is below an absolute floor, or within
``margin_db`` of the noise floor. The noise floor starts at that absolute
level, follows the quietest frames at once and a louder background slowly
(minimum tracking), so a steady line hum or hiss counts as quiet after a few
seconds, and a stream that starts mid-speech does not take speech for the floor. Written here rather than
taken from a library: webrtcvad needs a C build and fixed 10/20/30 ms frames
at 8-48 kHz, and decides speech versus not per frame; we need the trailing
quiet duration on arbitrary chunks, in a few lines of numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["EnergyVad", "VadConfig", "VadState"]


@dataclass(frozen=True)
class VadConfig:
    sample_rate: int = 16000
    frame_s: float = 0.01
    margin_db: float = 12.0  # a frame this far above the noise floor is not quiet
    quiet_dbfs: float = -55.0  # a frame below this level is quiet whatever the floor
    floor_rise_db_per_s: float = 2.0  # how fast the floor estimate climbs to a louder background


@dataclass
class VadState:
    start_s: float = 0.0  # stream time of the first sample
    frames: int = 0  # whole frames seen
    quiet_frames: int = 0  # trailing run of quiet frames
    floor_db: float | None = None
    rest: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def end_s(self, config: VadConfig) -> float:
        """Stream time at the end of the last whole frame."""
        return self.start_s + self.frames * config.frame_s


class EnergyVad:
    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._frame = round(self.config.sample_rate * self.config.frame_s)
        self._rise = self.config.floor_rise_db_per_s * self.config.frame_s

    def new_state(self, start_s: float = 0.0) -> VadState:
        return VadState(start_s=start_s)

    def feed(self, state: VadState, audio: np.ndarray, stop: Callable[[float, int], bool] | None = None) -> int | None:
        """Take float audio in [-1, 1] at the configured rate, any length.

        ``stop(end_s, quiet_frames)`` is asked after each whole frame (its end in stream time,
        the trailing quiet run then). When it says yes, the VAD stops after that frame and
        returns how many samples of ``audio`` it took; the rest is the caller's. Otherwise it
        takes all and returns None.
        """
        held = state.rest.size
        x = np.concatenate([state.rest, audio.astype(np.float32, copy=False)]) if held else audio
        n = x.size // self._frame
        frames = np.asarray(x[: n * self._frame], np.float32).reshape(n, self._frame)
        levels = 10.0 * np.log10(np.einsum("ij,ij->i", frames, frames) / self._frame + 1e-12)
        cfg, quiet = self.config, state.quiet_frames
        floor = cfg.quiet_dbfs if state.floor_db is None else state.floor_db
        for k, level in enumerate(levels.tolist()):
            floor = min(floor + self._rise, level)
            quiet = quiet + 1 if level < cfg.quiet_dbfs or level < floor + cfg.margin_db else 0
            if stop is not None and stop(state.start_s + (state.frames + k + 1) * cfg.frame_s, quiet):
                state.floor_db, state.quiet_frames = floor, quiet
                state.frames += k + 1
                state.rest = np.zeros(0, np.float32)
                return (k + 1) * self._frame - held
        state.floor_db, state.quiet_frames = floor, quiet
        state.frames += n
        state.rest = np.array(x[n * self._frame :], np.float32)
        return None
