"""The callstream exception tree.

::

    CallstreamError                 base of every error callstream raises on purpose
    ├── InputError                  bad data from a peer; closes that one stream
    │   ├── AudioFormatError        audio settings out of range (encoding, rate, channels)
    │   ├── DecodeError             audio bytes that cannot be decoded (odd size, NaN, inf)
    │   ├── AudioFileError          an audio file that is missing or that libsndfile cannot read
    │   ├── ConfigError             a stream config message that is malformed
    │   ├── CodecError              a message that is not valid callstream JSON
    │   │   └── UnsupportedVersion  a message whose schema version we do not speak
    │   ├── LimitExceeded           a per-connection limit (rate, session length) was passed
    │   ├── ProtocolError           messages out of order (audio before the config)
    │   └── ResumeError             a session resume that cannot continue (not held, gap, format)
    ├── Overloaded                  the server is at its stream limit; the peer may try again later
    ├── ModelError                  a model file that does not load or lacks metadata
    └── TransportError              a Kafka broker out of reach, or a flow through it that does not finish in time

Rules: an ``InputError`` becomes an ``Error`` event for its stream and never
kills a worker. Programmer misuse (wrong types, broken invariants) raises the
builtin ``ValueError`` / ``TypeError`` instead and is a bug to fix.
"""

from __future__ import annotations

__all__ = [
    "AudioFileError",
    "AudioFormatError",
    "CallstreamError",
    "CodecError",
    "ConfigError",
    "DecodeError",
    "InputError",
    "LimitExceeded",
    "ModelError",
    "Overloaded",
    "ProtocolError",
    "ResumeError",
    "TransportError",
    "UnsupportedVersion",
]


class CallstreamError(Exception):
    """Base class of all deliberate callstream errors."""


class InputError(CallstreamError):
    """Bad data from a peer. ``code`` is the stable machine-readable reason."""

    code = "bad_input"


class AudioFormatError(InputError):
    code = "bad_audio_format"


class DecodeError(InputError):
    code = "bad_audio"


class AudioFileError(InputError):
    code = "bad_audio_file"


class ConfigError(InputError):
    code = "bad_config"


class CodecError(InputError):
    code = "bad_message"


class UnsupportedVersion(CodecError):
    code = "unsupported_version"


class LimitExceeded(InputError):
    code = "limit"


class ProtocolError(InputError):
    code = "protocol"


class Overloaded(CallstreamError):
    """No room for another stream now: not the peer's fault, and worth a retry later."""

    code = "overloaded"


class ModelError(CallstreamError):
    """A model file that does not load or whose metadata is incomplete."""


class ResumeError(InputError):
    """A WebSocket resume that cannot continue; ``code`` says why."""

    codes = ("session_expired", "resume_gap", "resume_mismatch")

    def __init__(self, message: str, code: str) -> None:
        if code not in self.codes:
            raise ValueError(f"unknown resume error code {code!r}")
        super().__init__(message)
        self.code = code


class TransportError(CallstreamError):
    """A Kafka broker out of reach, or a flow through it that does not finish in time."""
