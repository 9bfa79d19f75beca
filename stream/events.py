"""The one event schema: every message callstream sends or receives.

Events are frozen dataclasses. ``stream.codec`` is the only place that turns
them into bytes; nothing else serializes them. Times are seconds of stream
audio (``start``/``end``) unless a field says wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

__all__ = [
    "AudioChunk",
    "ContentFlags",
    "EndOfStream",
    "SessionInfo",
    "Enriched",
    "Error",
    "Event",
    "Final",
    "Hypothesis",
    "IntentResult",
    "Partial",
    "RedactedSpan",
    "StreamConfig",
    "StreamEnd",
    "Word",
]


@dataclass(frozen=True)
class AudioChunk:
    """Raw audio from a peer. ``payload`` is interleaved frames in ``encoding``."""

    stream_id: str
    seq: int  # 0, 1, 2, ... per stream
    sample_offset: int  # index of the first sample frame in the stream
    sample_rate: int  # Hz
    encoding: str  # pcm16 | f32 | mulaw | alaw
    channels: int
    payload: bytes


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # s, stream time
    end: float  # s, stream time
    confidence: float  # 0..1


@dataclass(frozen=True)
class Hypothesis:
    """One n-best entry of a final."""

    text: str
    score: float  # log domain, higher is better


@dataclass(frozen=True)
class Partial:
    """Interim transcript of the open utterance. The first ``stable`` words never change."""

    stream_id: str
    channel: str  # "mono", "agent", "customer", or "ch<N>"
    utterance_id: str
    utterance_index: int
    text: str
    words: tuple[Word, ...] = ()
    stable: int = 0  # number of leading words that later partials keep
    start: float = 0.0  # s, stream time of the utterance start
    end: float = 0.0  # s, stream time of the audio decoded so far
    received_at: float | None = None  # wall clock (unix s) the last audio arrived
    emitted_at: float | None = None  # wall clock (unix s) the event left the pipeline


@dataclass(frozen=True)
class Final:
    """The transcript of a finished utterance, emitted exactly once."""

    stream_id: str
    channel: str
    utterance_id: str  # deterministic: "<stream_id>/<channel>/<utterance_index>"
    utterance_index: int
    text: str
    words: tuple[Word, ...] = ()
    nbest: tuple[Hypothesis, ...] = ()
    start: float = 0.0  # s
    # s; for a silence endpoint, where the rule's silence was met. The next utterance starts at
    # the first frame the model had not decoded then, which can be up to a chunk earlier (quiet).
    end: float = 0.0
    endpoint: str = "silence"  # silence | max_length | end_of_stream | flush
    received_at: float | None = None
    emitted_at: float | None = None
    # Words masked by the stream's redaction (``text`` and ``words`` hold "#"s there), with the
    # audio span of each, so that recordings can be muted.
    redactions: tuple[RedactedSpan, ...] = ()


@dataclass(frozen=True)
class IntentResult:
    label: str  # "out_of_scope" below the threshold
    score: float  # calibrated probability of ``label``
    top_k: tuple[tuple[str, float], ...] = ()
    model: str = ""
    # The in-scope label is too unsure to act on without asking the caller: its probability
    # is below the model's confirmation threshold. Never set for out_of_scope.
    needs_confirmation: bool = False


@dataclass(frozen=True)
class RedactedSpan:
    kind: str  # card | cvv | expiry | ssn | phone | email | dob | profanity
    first_word: int  # index into the final's words
    last_word: int  # inclusive
    start: float  # s, so the audio can be muted
    end: float  # s


@dataclass(frozen=True)
class ContentFlags:
    profanity: float = 0.0  # score 0..1
    toxicity: float = 0.0  # score 0..1
    flagged: tuple[str, ...] = ()  # names of the flags that fired
    spans: tuple[RedactedSpan, ...] = ()


@dataclass(frozen=True)
class Enriched:
    """A final with intent and content filtering applied."""

    transcript: Final
    intent: IntentResult | None = None
    flags: ContentFlags = field(default_factory=ContentFlags)
    redacted_text: str = ""
    emitted_at: float | None = None


@dataclass(frozen=True)
class Error:
    """A stream-level failure. ``fatal`` errors close the stream."""

    stream_id: str
    code: str  # stable reason, e.g. bad_audio, bad_config, unsupported_version
    message: str
    fatal: bool = True


@dataclass(frozen=True)
class EndOfStream:
    stream_id: str
    reason: str = "end"  # end | timeout | error | shutdown | overloaded
    audio_seconds: float = 0.0


@dataclass(frozen=True)
class SessionInfo:
    """The server's first answer on a WebSocket: the session to resume with, and the audio it holds.

    A client that reconnects with ``session_id`` sends audio from sample frame
    ``offset`` on (or says where it resends from with ``resume_offset``).
    """

    stream_id: str
    session_id: str
    offset: int = 0  # sample frames (per channel) the server has received
    resumed: bool = False
    grace_s: float = 0.0  # how long the session is held after a disconnect; 0: not held


@dataclass(frozen=True)
class StreamConfig:
    """First message of a client stream: how to read its audio and what to return."""

    sample_rate: int = 16000
    encoding: str = "pcm16"
    channels: int = 1
    channel_names: tuple[str, ...] = ()  # default: mono, or agent/customer for stereo
    language_model: bool = True
    hotwords: tuple[tuple[str, float], ...] = ()  # (phrase, weight)
    interim_results: bool = True
    number_formatting: bool = False
    mask_profanity: bool = True
    endpoint_silence_s: float | None = None  # None: server default
    endpoint_no_speech_s: float | None = None
    max_utterance_s: float | None = None
    session_id: str | None = None  # to resume a held session
    resume_offset: int | None = None  # sample frame the client's next audio starts at (None: the server's offset)
    # Redaction modes applied to partials and finals before they leave the server: pci, ssn,
    # phone, email, dob, numbers (operators.redaction.MODES). Empty: raw text.
    redact: tuple[str, ...] = ("pci", "ssn", "phone", "email", "dob")


@dataclass(frozen=True)
class StreamEnd:
    """Client asks to flush; ``close`` False keeps the stream open (Finalize)."""

    close: bool = True


Event = Union[AudioChunk, Partial, Final, Enriched, Error, EndOfStream, SessionInfo, StreamConfig, StreamEnd]
