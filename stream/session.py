"""The WebSocket session protocol, without I/O: client messages in, what to do out.

A ``Session`` is one stream as a client sees it across connections: the sample
frames it has sent, the frames a resuming client resends and the server skips,
its byte-rate limit, and the finals and enriched events a dropped connection
missed. ``Sessions`` holds them all and applies admission (``max_streams``,
held sessions included, and whether the server keeps up) and the resume
rules. Neither reads a clock, a socket or a model: the caller passes the time,
feeds the audio that ``audio`` returns to the recogniser and sends what comes
back. ``stream.websocket`` wraps them in
asyncio; the tests drive them directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from stream import codec
from stream.errors import InputError, LimitExceeded, Overloaded, ProtocolError, ResumeError
from stream.events import Enriched, Event, Final, SessionInfo, StreamConfig, StreamEnd
from stream.pipeline import StreamState

__all__ = ["SESSION_ID", "RateLimit", "Session", "Sessions", "parse_config", "parse_control"]

SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RateLimit:
    """Token bucket over bytes, with a one-second burst."""

    def __init__(self, rate: float, now: float) -> None:
        self.rate, self.tokens, self.stamp = rate, rate, now

    def take(self, n: int, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return self.tokens >= -self.rate  # allow a burst of one extra second, then refuse


def parse_config(message: str | bytes) -> StreamConfig:
    """The first client message: a config, as text (``ProtocolError`` for audio, ``InputError`` for the rest)."""
    if isinstance(message, bytes):
        raise ProtocolError("the first message must be a JSON config, got binary audio")
    config = codec.decode_client(message)
    if not isinstance(config, StreamConfig):
        raise InputError(f"the first message must be a config, got {type(config).__name__}")
    return config


def parse_control(message: str) -> StreamEnd:
    """A text message after the config: ``finalize`` or ``end``."""
    control = codec.decode_client(message)
    if not isinstance(control, StreamEnd):
        raise InputError(f"unexpected {type(control).__name__} after the config")
    return control


@dataclass(eq=False)
class Session:
    """One stream across its connections."""

    state: StreamState
    limit: RateLimit
    max_session_s: float
    frames: int = 0  # sample frames received
    skip: int = 0  # frames to drop from the next audio (a resumed client resending)
    pending: list[Event] = field(default_factory=list)  # finals the dropped connection did not get
    ended: bool = False  # finished or cut off: later messages of its connection are ignored

    @property
    def stream_id(self) -> str:
        return self.state.stream_id

    def audio(self, payload: bytes, now: float) -> bytes:
        """The part of a binary message to feed the recogniser: over the rate limit it raises
        ``LimitExceeded``; frames a resuming client sends again are dropped."""
        if not self.limit.take(len(payload), now):
            raise LimitExceeded("audio arrives faster than max_bytes_per_s")
        frame_bytes = self.state.format.frame_bytes
        if self.skip:
            drop = min(self.skip, len(payload) // frame_bytes)
            self.skip -= drop
            payload = payload[drop * frame_bytes :]
        return payload

    def fed(self, payload: bytes) -> None:
        """``payload`` (from ``audio``) reached the recogniser; past ``max_session_s`` it raises ``LimitExceeded``."""
        self.frames += len(payload) // self.state.format.frame_bytes
        if self.state.audio_state.samples_decoded / self.state.format.sample_rate > self.max_session_s:
            raise LimitExceeded(f"session longer than max_session_s={self.max_session_s:g}")

    def undelivered(self, events: Sequence[Event]) -> None:
        """Events the connection did not take: its finals and enriched events wait for a resume."""
        self.pending += [e for e in events if isinstance(e, (Final, Enriched))]

    def welcome(self, resumed: bool, grace_s: float) -> list[Event]:
        """What a (re)connected client gets first: the session, then the events it missed."""
        info = SessionInfo(stream_id=self.stream_id, session_id=self.stream_id, offset=self.frames,
                           resumed=resumed, grace_s=grace_s)
        pending, self.pending = self.pending, []
        return [info, *pending]


class Sessions:
    """The sessions one server holds, live or waiting for a resume: admission and the resume rules."""

    def __init__(self, create: Callable[[str, StreamConfig], StreamState], *, max_streams: int,
                 max_bytes_per_s: float, max_session_s: float, grace_s: float) -> None:
        self._create = create
        self.max_streams, self.max_bytes_per_s = max_streams, max_bytes_per_s
        self.max_session_s, self.grace_s = max_session_s, grace_s
        self._held: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._held)

    def open(self, config: StreamConfig, stream_id: str, now: float, *, behind: bool = False) -> tuple[Session, bool]:
        """A new session, or the held one that ``config.session_id`` names (resume, True).

        ``behind``: the server does not keep up with the streams it has (``stream.load``), so it
        takes no new ones; a held session still resumes. Raises ``InputError`` for a bad session id
        or offset, ``ResumeError`` for a resume that cannot continue, ``Overloaded`` past
        ``max_streams`` or when behind.
        """
        sid = config.session_id
        if config.resume_offset is not None and config.resume_offset < 0:
            raise InputError(f"resume_offset must be >= 0, got {config.resume_offset}")
        if sid is not None and not SESSION_ID.fullmatch(sid):
            raise InputError("session_id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        held = self._held.get(sid) if sid is not None else None
        if held is None:
            if config.resume_offset:
                raise ResumeError(f"session {sid!r} is not held (unknown, ended or past its "
                                  f"{self.grace_s:g} s grace period); start a new stream", "session_expired")
            # Held sessions count: their clients are owed the room to resume.
            if self.max_streams and len(self._held) >= self.max_streams:
                raise Overloaded(f"the server is serving its limit of {self.max_streams} streams; try again later")
            if behind:
                raise Overloaded("the server does not keep up with its streams in real time; try again later")
            session = Session(self._create(stream_id, config), RateLimit(self.max_bytes_per_s, now),
                              self.max_session_s)
            self._held[stream_id] = session
            return session, False
        old = held.state.config
        if (config.sample_rate, config.encoding, config.channels) != (old.sample_rate, old.encoding, old.channels):
            raise ResumeError("a resumed session keeps its audio format: "
                              f"{old.encoding} {old.sample_rate} Hz x{old.channels}", "resume_mismatch")
        start = held.frames if config.resume_offset is None else config.resume_offset
        if start > held.frames:
            raise ResumeError(f"the server holds {held.frames} sample frames of session {sid!r}, and the audio "
                              f"would resume at {start}; resend from frame {held.frames}", "resume_gap")
        held.skip = held.frames - start
        return held, True

    def close(self, session: Session) -> None:
        """The session is over: it can no longer be resumed."""
        session.ended = True
        if self._held.get(session.stream_id) is session:
            del self._held[session.stream_id]
