"""Codec: round trips, the exported JSON Schema, and clear errors on bad input."""

import json
from pathlib import Path

import pytest

from stream import codec
from stream.errors import AudioFormatError, CodecError, UnsupportedVersion
from stream.events import (
    AudioChunk,
    ContentFlags,
    EndOfStream,
    Enriched,
    Error,
    Final,
    Hypothesis,
    IntentResult,
    Partial,
    RedactedSpan,
    StreamConfig,
    StreamEnd,
    Word,
)

WORDS = (Word("my", 0.1, 0.3, 0.9), Word("card", 0.35, 0.7, 0.8))
FINAL = Final(
    stream_id="call-1", channel="agent", utterance_id="call-1/agent/0", utterance_index=0,
    text="my card", words=WORDS, nbest=(Hypothesis("my card", -1.5), Hypothesis("my car", -2.0)),
    start=0.1, end=0.7, endpoint="silence", received_at=1.5, emitted_at=1.6,
)
EVENTS = [
    AudioChunk("s", 3, 4800, 8000, "mulaw", 2, b"\x00\xffabc"),
    Partial("s", "mono", "s/mono/0", 0, "my car", WORDS, stable=1, start=0.1, end=0.5),
    FINAL,
    Enriched(
        FINAL,
        IntentResult("card_arrival", 0.91, (("card_arrival", 0.91), ("lost_card", 0.05)), "minilm"),
        ContentFlags(0.01, 0.02, ("pii",), (RedactedSpan("card", 1, 1, 0.35, 0.7),)),
        "my [card]",
        emitted_at=2.0,
    ),
    Error("s", "bad_audio", "odd byte count"),
    EndOfStream("s", "end", 12.5),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_server_events_round_trip(event):
    data = codec.encode(event)
    assert json.loads(data)["v"] == codec.SCHEMA_VERSION
    assert codec.decode(data) == event


@pytest.mark.parametrize(
    "message",
    [StreamConfig(sample_rate=8000, encoding="mulaw", channels=2, hotwords=(("acme", 5.0),)),
     StreamEnd(close=True), StreamEnd(close=False)],
)
def test_client_messages_round_trip(message):
    assert codec.decode_client(codec.encode_client(message)) == message


def test_client_may_omit_version_and_defaults_apply():
    cfg = codec.decode_client('{"type": "config", "sample_rate": 8000}')
    assert cfg == StreamConfig(sample_rate=8000)


@pytest.mark.parametrize(
    "data,error,match",
    [
        (b"\xff\xfe", CodecError, "not valid JSON"),
        ("[1, 2]", CodecError, "expected a JSON object"),
        ('{"v": 99, "type": "final"}', UnsupportedVersion, "version 99"),
        ('{"type": "nope"}', CodecError, "unknown message type 'nope'"),
        ('{"v": 1}', CodecError, "no string 'type'"),
        ('{"type": "error", "stream_id": "s", "code": "x"}', CodecError, "missing required field 'message'"),
        ('{"type": "error", "stream_id": 5, "code": "x", "message": "m"}', CodecError, "error.stream_id: expected str"),
        ('{"type": "audio", "stream_id": "s", "seq": 0, "sample_offset": 0, "sample_rate": 8000,'
         ' "encoding": "pcm16", "channels": 1, "payload": "***"}', CodecError, "invalid base64"),
        ('{"type": "end", "stream_id": "s", "bogus": 1}', CodecError, r"unknown field\(s\) \['bogus'\]"),
    ],
)
def test_malformed_server_messages_give_clear_errors(data, error, match):
    with pytest.raises(error, match=match):
        codec.decode(data)


@pytest.mark.parametrize(
    "data,match",
    [
        ('{"type": "config", "sampleRate": 8000}', r"unknown field\(s\) \['sampleRate'\]"),
        ('{"type": "config", "sample_rate": "8000"}', "config.sample_rate: expected int"),
        ('{"type": "config", "hotwords": [["acme"]]}', r"config.hotwords\[0\]: expected 2 items"),
        ('{"type": "end", "close": false}', "'end' takes no fields"),
        ('{"type": "partial"}', "unknown message type 'partial'"),
    ],
)
def test_malformed_client_messages_give_clear_errors(data, match):
    with pytest.raises(CodecError, match=match):
        codec.decode_client(data)


def test_encode_rejects_non_events():
    with pytest.raises(TypeError, match="expected a server event"):
        codec.encode(StreamConfig())


def test_exported_schema_file_is_current():
    path = Path(codec.__file__).with_name("events.schema.json")
    assert json.loads(path.read_text()) == codec.json_schema(), "run: callstream schema --out stream/events.schema.json"


def test_schema_validates_encoded_events_when_jsonschema_is_present():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is optional")
    schema = codec.json_schema()
    for event in EVENTS:
        jsonschema.validate(json.loads(codec.encode(event)), schema)


def test_kafka_audio_record_round_trip_and_errors():
    chunk = EVENTS[0]
    key, value, headers = codec.audio_to_record(chunk)
    assert codec.audio_from_record(key, value, headers) == chunk
    with pytest.raises(CodecError, match="no key"):
        codec.audio_from_record(None, value, headers)
    with pytest.raises(CodecError, match="lacks header 'cs-seq'"):
        codec.audio_from_record(key, value, [h for h in headers if h[0] != "cs-seq"])
    garbage = [(k, b"x!" if k == "cs-sample-rate" else v) for k, v in headers]
    with pytest.raises(CodecError, match="'cs-sample-rate' is not an integer"):
        codec.audio_from_record(key, value, garbage)
    with pytest.raises(UnsupportedVersion):
        codec.audio_from_record(key, value, [("cs-v", b"7"), *headers[1:]])


def test_kafka_calls_take_their_hotwords_and_redaction_in_headers():
    from stream.kafka import call_config

    chunk = EVENTS[0]
    key, value, headers = codec.audio_to_record(chunk)
    assert call_config(chunk, headers).hotwords == ()
    named = [*headers, ("cs-hotwords", '[["acme bank", 8.0], ["José", 0]]'.encode()), ("cs-redact", b"pci")]
    assert codec.audio_from_record(key, value, named) == chunk  # a UTF-8 header is text too
    config = call_config(chunk, named, partials=False)
    assert config.hotwords == (("acme bank", 8.0), ("José", 0.0))
    assert config.redact == ("pci",) and not config.interim_results
    assert (config.sample_rate, config.encoding, config.channels) == (chunk.sample_rate, chunk.encoding, chunk.channels)
    for bad, match in [(b"acme", "'cs-hotwords' is not valid JSON"), (b'[["acme"]]', r"cs-hotwords\[0\]: expected 2 items"),
                       (b'{"acme": 1}', "cs-hotwords: expected an array"),
                       (b'[["acme", NaN]]', r"cs-hotwords\[0\]\[1\]: expected a finite")]:
        with pytest.raises(CodecError, match=match):
            call_config(chunk, [*headers, ("cs-hotwords", bad)])


# Inputs that once raised something other than CodecError (found by tests/fuzz/fuzz_codec.py, and by
# hand for the parser's limits): each now gets a clear CodecError.
@pytest.mark.parametrize(
    "data,match",
    [
        ("[" * 100_000, "not valid JSON: maximum recursion depth"),
        ('{"type": "config", "resume_offset": 1' + "0" * 5000 + "}", "not valid JSON: Exceeds the limit"),
        ('{"type": "config", "endpoint_silence_s": 1' + "0" * 400 + "}", "endpoint_silence_s: expected a finite"),
        ('{"type": "config", "endpoint_silence_s": NaN}', "endpoint_silence_s: expected a finite number, got nan"),
        ('{"type": "config", "max_utterance_s": 1e999}', "max_utterance_s: expected a finite number, got inf"),
        ('{"type": "config", "hotwords": [["acme", Infinity]]}', r"hotwords\[0\]\[1\]: expected a finite"),
    ],
)
def test_hostile_client_messages_give_codec_errors(data, match):
    with pytest.raises(CodecError, match=match):
        codec.decode_client(data)


def test_a_server_event_with_a_non_finite_number_is_refused_not_re_encoded():
    # The fuzzer's input: a final whose "end" was -Infinity decoded, then failed to encode again
    # (ValueError), as the Kafka agents encode the finals they read.
    data = ('{"v":1,"type":"final","stream_id":"s","channel":"agent","utterance_id":"s/agent/0",'
            '"utterance_index":0,"text":"my card","end":-Infinity,"received_at":null,"emitted_at":null}')
    with pytest.raises(CodecError, match="final.end: expected a finite number, got -inf"):
        codec.decode(data)


@pytest.mark.parametrize(
    "header,value,error,match",
    [
        ("cs-sample-rate", b"0", AudioFormatError, "sample_rate 0 Hz is outside"),
        ("cs-channels", b"0", AudioFormatError, "channels 0 is outside"),
        ("cs-encoding", b"opus", AudioFormatError, "unknown encoding 'opus'"),
        ("cs-seq", b"-1", CodecError, "'cs-seq' must be >= 0"),
        ("cs-sample-offset", b"-8000", CodecError, "'cs-sample-offset' must be in 0..2\\*\\*53-1"),
        # found by tests/fuzz/fuzz_kafka.py: the worker's offset / rate overflowed a float
        ("cs-sample-offset", b"9" * 400, CodecError, "'cs-sample-offset' must be in"),
    ],
)
def test_kafka_audio_record_headers_out_of_range_are_input_errors(header, value, error, match):
    key, payload, headers = codec.audio_to_record(EVENTS[0])
    with pytest.raises(error, match=match):
        codec.audio_from_record(key, payload, [(k, value if k == header else v) for k, v in headers])
