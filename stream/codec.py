"""The only serializer: events <-> versioned JSON, and audio <-> Kafka records.

Every JSON message is an object with ``"v"`` (schema version, currently 1) and
``"type"``. Server messages: ``audio``, ``partial``, ``final``, ``enriched``,
``error``, ``end``. Client messages: ``config``, ``audio``, ``end`` (flush and
close) and ``finalize`` (flush, keep the stream open). Clients may leave ``v``
out; it then means the current version. ``bytes`` travel as base64.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import types
import typing
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from operators.audio import AudioFormat
from stream.errors import CodecError, UnsupportedVersion
from stream.events import (
    AudioChunk,
    EndOfStream,
    Enriched,
    Error,
    Event,
    Final,
    Partial,
    SessionInfo,
    StreamConfig,
    StreamEnd,
)

__all__ = [
    "MAX_SAMPLE_OFFSET",
    "SCHEMA_VERSION",
    "audio_from_record",
    "audio_to_record",
    "decode",
    "decode_client",
    "encode",
    "encode_client",
    "end_of_call_record",
    "hotwords_from_header",
    "json_schema",
]

SCHEMA_VERSION = 1
# Sample offsets of Kafka records stay below this, where floats still count every sample: 2**53
# frames are 1,400 years at 192 kHz. A larger one, such as 10**400, cannot become stream seconds.
MAX_SAMPLE_OFFSET = 1 << 53

_SERVER_TYPES: dict[str, type] = {
    "audio": AudioChunk,
    "partial": Partial,
    "final": Final,
    "enriched": Enriched,
    "error": Error,
    "end": EndOfStream,
    "session": SessionInfo,
}
_SERVER_NAMES = {cls: name for name, cls in _SERVER_TYPES.items()}
_CLIENT_TYPES: dict[str, type] = {"config": StreamConfig, "audio": AudioChunk}


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def encode(event: Event) -> bytes:
    """Serialize a server-side event to UTF-8 JSON bytes."""
    name = _SERVER_NAMES.get(type(event))
    if name is None:
        raise TypeError(f"expected a server event, got {type(event).__name__}")
    return _dump({"v": SCHEMA_VERSION, "type": name, **_to_json(event)})


def encode_client(message: StreamConfig | StreamEnd | AudioChunk) -> bytes:
    """Serialize a client message (what a WebSocket client sends)."""
    if isinstance(message, StreamEnd):
        return _dump({"v": SCHEMA_VERSION, "type": "end" if message.close else "finalize"})
    if isinstance(message, StreamConfig):
        return _dump({"v": SCHEMA_VERSION, "type": "config", **_to_json(message)})
    if isinstance(message, AudioChunk):
        return _dump({"v": SCHEMA_VERSION, "type": "audio", **_to_json(message)})
    raise TypeError(f"expected a client message, got {type(message).__name__}")


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _load(data: bytes | str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError: bad JSON or UTF-8, or an integer past Python's 4300-digit limit;
        # RecursionError: arrays or objects nested deeper than the parser's stack.
        raise CodecError(f"message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise CodecError(f"expected a JSON object, got {type(obj).__name__}")
    version = obj.pop("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise UnsupportedVersion(f"schema version {version!r} is not supported; this server speaks {SCHEMA_VERSION}")
    if not isinstance(obj.get("type"), str):
        raise CodecError("message has no string 'type' field")
    return obj


def decode(data: bytes | str) -> Event:
    """Parse a server-side message. Raises ``CodecError`` on anything malformed."""
    obj = _load(data)
    name = obj.pop("type")
    cls = _SERVER_TYPES.get(name)
    if cls is None:
        raise CodecError(f"unknown message type {name!r}; expected one of {sorted(_SERVER_TYPES)}")
    return _build(cls, obj, name)


def decode_client(data: bytes | str) -> StreamConfig | StreamEnd | AudioChunk:
    """Parse a client message: config, audio, end or finalize."""
    obj = _load(data)
    name = obj.pop("type")
    if name in ("end", "finalize"):
        if obj:
            raise CodecError(f"'{name}' takes no fields, got {sorted(obj)}")
        return StreamEnd(close=name == "end")
    cls = _CLIENT_TYPES.get(name)
    if cls is None:
        raise CodecError(
            f"unknown message type {name!r}; expected one of config, audio, end, finalize"
        )
    return _build(cls, obj, name)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _build(cls: type, obj: dict[str, Any], where: str) -> Any:
    if not isinstance(obj, dict):
        raise CodecError(f"{where}: expected an object, got {type(obj).__name__}")
    hints = _hints(cls)
    unknown = set(obj) - set(hints)
    if unknown:
        raise CodecError(f"{where}: unknown field(s) {sorted(unknown)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in obj:
            kwargs[f.name] = _convert(hints[f.name], obj[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise CodecError(f"{where}: missing required field {f.name!r}")
    return cls(**kwargs)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _convert(tp: Any, value: Any, where: str) -> Any:
    if _is_union(tp):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    origin = get_origin(tp)
    if origin is tuple:
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected an array, got {type(value).__name__}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise CodecError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bytes:
        if not isinstance(value, str):
            raise CodecError(f"{where}: expected base64 text, got {type(value).__name__}")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"{where}: invalid base64") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CodecError(f"{where}: expected a number, got {type(value).__name__}")
        # Python's JSON reads NaN, Infinity and 1e999, and ints too large for a float; none is a
        # value any field takes, and a non-finite one could not be encoded again.
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise CodecError(f"{where}: expected a finite number, got {value!r:.40}")
        return number
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise CodecError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
        return value
    raise TypeError(f"no JSON mapping for {tp!r} at {where}")


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if _is_union(tp):
        return {"anyOf": [_schema_of(a, defs) for a in get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    if get_origin(tp) is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0], defs)}
        return {
            "type": "array",
            "prefixItems": [_schema_of(a, defs) for a in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    simple = {bytes: {"type": "string", "contentEncoding": "base64"}, float: {"type": "number"},
              int: {"type": "integer"}, str: {"type": "string"}, bool: {"type": "boolean"}}
    return dict(simple[tp])


def _object_schema(cls: type, defs: dict[str, Any], type_name: str | None = None) -> dict[str, Any]:
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required = []
    if type_name is not None:
        props["v"] = {"const": SCHEMA_VERSION}
        props["type"] = {"const": type_name}
        required.append("type")
    for f in dataclasses.fields(cls):
        props[f.name] = _schema_of(hints[f.name], defs)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of every message, server and client side."""
    defs: dict[str, Any] = {}
    server = [_object_schema(cls, defs, name) for name, cls in _SERVER_TYPES.items()]
    client = [_object_schema(StreamConfig, defs, "config")] + [
        {"type": "object", "properties": {"v": {"const": SCHEMA_VERSION}, "type": {"const": n}},
         "required": ["type"], "additionalProperties": False}
        for n in ("end", "finalize")
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"callstream messages, version {SCHEMA_VERSION}",
        "$defs": defs,
        "oneOf": [
            {"title": "server message", "oneOf": server},
            {"title": "client message", "oneOf": client},
        ],
    }


def audio_to_record(chunk: AudioChunk) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Kafka record for an audio chunk: (key=stream id, value=payload, headers)."""
    headers = [
        ("cs-v", str(SCHEMA_VERSION).encode()),
        ("cs-encoding", chunk.encoding.encode()),
        ("cs-sample-rate", str(chunk.sample_rate).encode()),
        ("cs-channels", str(chunk.channels).encode()),
        ("cs-seq", str(chunk.seq).encode()),
        ("cs-sample-offset", str(chunk.sample_offset).encode()),
    ]
    return chunk.stream_id.encode("utf-8"), chunk.payload, headers


def hotwords_from_header(value: bytes) -> tuple[tuple[str, float], ...]:
    """A call's hotwords from its Kafka ``cs-hotwords`` header: JSON, as the WebSocket config's
    ``hotwords`` (``[["acme bank", 8.0], ["visa", 0]]``; weight 0: the server's default). Raises
    ``CodecError`` on anything else; the recogniser checks the limits when the call opens."""
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"audio record header 'cs-hotwords' is not valid JSON: {exc}") from None
    return _convert(_hints(StreamConfig)["hotwords"], obj, "cs-hotwords")


def end_of_call_record(call_id: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Kafka record that ends a call: (key=call id, empty value, headers with ``cs-end: 1``)."""
    return call_id.encode("utf-8"), b"", [("cs-v", str(SCHEMA_VERSION).encode()), ("cs-end", b"1")]


def audio_from_record(
    key: bytes | None, value: bytes | None, headers: typing.Sequence[tuple[str, bytes]]
) -> AudioChunk:
    """Parse a Kafka audio record. Missing or garbage headers raise ``CodecError``; an audio format
    out of range (encoding, rate, channels) raises ``AudioFormatError``."""
    if not key:
        raise CodecError("audio record has no key; the key must be the call id")
    try:
        stream_id = key.decode("utf-8")
        h = {k: v.decode("utf-8") for k, v in headers}
    except (UnicodeDecodeError, AttributeError):
        raise CodecError("audio record key or headers are not text") from None
    version = h.get("cs-v", str(SCHEMA_VERSION))
    if version != str(SCHEMA_VERSION):
        raise UnsupportedVersion(f"audio record schema version {version!r} is not supported")

    def need_int(name: str) -> int:
        if name not in h:
            raise CodecError(f"audio record lacks header {name!r}")
        try:
            return int(h[name])
        except ValueError:
            raise CodecError(f"audio record header {name!r} is not an integer: {h[name]!r}") from None

    if "cs-encoding" not in h:
        raise CodecError("audio record lacks header 'cs-encoding'")
    seq, offset = need_int("cs-seq"), need_int("cs-sample-offset")
    if seq < 0:
        raise CodecError(f"audio record header 'cs-seq' must be >= 0, got {seq}")
    if not 0 <= offset < MAX_SAMPLE_OFFSET:
        raise CodecError(f"audio record header 'cs-sample-offset' must be in 0..2**53-1, got {h['cs-sample-offset'][:24]}")
    fmt = AudioFormat(encoding=h["cs-encoding"], sample_rate=need_int("cs-sample-rate"),
                      channels=need_int("cs-channels"))
    return AudioChunk(
        stream_id=stream_id,
        seq=seq,
        sample_offset=offset,
        sample_rate=fmt.sample_rate,
        encoding=fmt.encoding,
        channels=fmt.channels,
        payload=value or b"",
    )
