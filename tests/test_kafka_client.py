"""`callstream kafka-send` and `kafka-tail` against a real Kafka-protocol broker (Tansu on loopback)."""

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from operators.audio import encode_audio
from stream import codec
from stream.cli import main
from stream.devbroker import free_port
from stream.display import format_event
from stream.events import EndOfStream, Enriched, Final, IntentResult, Word

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calls(tmp_path_factory):
    """A stereo µ-law WAV (sent as mulaw) and a mono float FLAC at 16 kHz (sent as pcm16)."""
    d = tmp_path_factory.mktemp("calls")
    rng = np.random.default_rng(0)
    sf.write(d / "stereo.wav", (0.3 * rng.standard_normal((8123, 2))).clip(-1, 1), 8000, subtype="ULAW")
    sf.write(d / "mono.flac", (0.3 * rng.standard_normal(8800)).clip(-1, 1), 16000)
    return d


def _consume(bootstrap, topic, n, timeout_s=20.0):
    async def body():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, fetch_max_wait_ms=10)
        await consumer.start()
        records, loop = [], asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            while len(records) < n and loop.time() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
            return records, consumer.partitions_for_topic(topic)
        finally:
            await consumer.stop()

    return asyncio.run(body())


def _check_call(records, path, encoding, step):
    """The records of one call: audio chunks in order with the worker's headers, then the end of the call."""
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    *audio, end = sorted(records, key=lambda r: r.offset)
    chunks = [codec.audio_from_record(r.key, r.value, r.headers) for r in audio]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert [c.sample_offset for c in chunks] == list(range(0, len(x), step))
    assert {(c.sample_rate, c.channels, c.encoding) for c in chunks} == {(rate, x.shape[1], encoding)}
    assert b"".join(c.payload for c in chunks) == encode_audio(x, encoding)
    assert end.key == audio[0].key and end.value == b"" and ("cs-end", b"1") in end.headers
    return audio[0].key.decode()


def test_kafka_send_sends_each_file_as_one_call_with_the_headers_the_worker_reads(broker, calls, capsys):
    topic = f"audio-{uuid.uuid4().hex[:8]}"
    assert main(["kafka-send", str(calls / "stereo.wav"), str(calls / "mono.flac"), "--bootstrap", broker.bootstrap,
                 "--topic", topic]) == 0
    out = capsys.readouterr().out.splitlines()
    records, partitions = _consume(broker.bootstrap, topic, 12 + 7)
    assert len(records) == 19
    assert len(partitions) == 8  # created as the ASR worker creates its audio topic, not by the broker's default
    by_call = {}
    for r in records:
        by_call.setdefault(r.key, []).append(r)
    assert len(by_call) == 2 and all(len({r.partition for r in rs}) == 1 for rs in by_call.values())
    stereo, mono = sorted(by_call.values(), key=len, reverse=True)
    stereo_id = _check_call(stereo, calls / "stereo.wav", "mulaw", 800)
    mono_id = _check_call(mono, calls / "mono.flac", "pcm16", 1600)
    assert stereo_id.startswith("stereo-") and mono_id.startswith("mono-")
    assert sorted(out) == [f"mono.flac: call {mono_id}, 0.6 s, 1 channel(s), 16000 Hz pcm16: 7 records to {topic}",
                           f"stereo.wav: call {stereo_id}, 1.0 s, 2 channel(s), 8000 Hz mulaw: 12 records to {topic}"]


def test_kafka_send_realtime_paces_the_call_under_its_own_id(broker, calls, capsys):
    topic = f"audio-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    assert main(["kafka-send", str(calls / "mono.flac"), "--call-id", "my-call", "--realtime", "--chunk-ms", "50",
                 "--bootstrap", broker.bootstrap, "--topic", topic]) == 0
    assert time.perf_counter() - t0 >= 0.5  # 0.55 s of audio; the first chunk is due after 50 ms
    records, _ = _consume(broker.bootstrap, topic, 12)
    assert _check_call(records, calls / "mono.flac", "pcm16", 800) == "my-call"
    assert capsys.readouterr().out.startswith("mono.flac: call my-call, 0.6 s")


def test_kafka_send_names_the_calls_redaction_on_every_audio_record(broker, calls):
    topic = f"audio-{uuid.uuid4().hex[:8]}"
    assert main(["kafka-send", str(calls / "mono.flac"), "--redact", "pci,phone", "--bootstrap", broker.bootstrap,
                 "--topic", topic]) == 0
    records, _ = _consume(broker.bootstrap, topic, 7)
    audio = [r for r in records if r.value]
    assert audio and all(("cs-redact", b"pci,phone") in r.headers for r in audio)


def test_kafka_send_refuses_bad_arguments_in_one_line(calls, capsys):
    assert main(["kafka-send", str(calls / "absent.wav")]) == 2
    assert capsys.readouterr().err == f"callstream kafka-send: error: {calls / 'absent.wav'}: no such file\n"
    assert main(["kafka-send", str(calls / "mono.flac"), str(calls / "stereo.wav"), "--call-id", "x"]) == 2
    assert capsys.readouterr().err == "callstream kafka-send: error: --call-id names one call: give one FILE\n"
    assert main(["kafka-send", str(calls / "mono.flac"), "--redact", "cards"]) == 2
    assert "--redact: unknown redaction mode cards" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["kafka-send", "mono.flac"], ["kafka-tail"]], ids=["send", "tail"])
def test_an_unreachable_broker_is_one_line_and_exit_2(calls, argv):
    bootstrap = f"127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "stream.cli", *argv, "--bootstrap", bootstrap], cwd=calls,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr == f"callstream {argv[0]}: error: cannot reach Kafka at {bootstrap}\n" and proc.stdout == ""


def _final(call, index, text):
    words = tuple(Word(w, 0.5 * i, 0.5 * i + 0.4, 0.9) for i, w in enumerate(text.split()))
    return Final(call, "customer", f"{call}/customer/{index}", index, text, words, start=0.0, end=0.5 * len(words))


def test_kafka_tail_prints_events_as_the_demo_does(broker, capsys):
    topic = f"en-{uuid.uuid4().hex[:8]}"
    final = _final("call-a", 0, "i lost my card")
    enriched_a = Enriched(final, IntentResult("lost_or_stolen_card", 0.97), redacted_text=final.text)
    enriched_b = Enriched(_final("call-b", 0, "what is my balance"), IntentResult("balance", 0.9),
                          redacted_text="what is my balance")
    values = [codec.encode(final), codec.encode(enriched_a), b"not json", codec.encode(enriched_b),
              codec.encode(EndOfStream("call-a", audio_seconds=3.0))]

    async def produce():
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 1, 1)])  # one partition: the records keep their order
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
        await producer.stop()

    asyncio.run(produce())
    tail = ["kafka-tail", "--topic", topic, "--bootstrap", broker.bootstrap, "--fetch-max-wait-ms", "2"]
    assert main([*tail, "--from-beginning", "--max", "5"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "== call-a", *format_event(final).splitlines(), *format_event(enriched_a, with_transcript=True).splitlines(),
        "== call-b", *format_event(enriched_b, with_transcript=True).splitlines(),
        "== call-a", "-- end of stream call-a (3.0 s of audio)",
    ]
    assert err.startswith(f"callstream kafka-tail: skipping {topic}/0/2: message is not valid JSON")

    t0 = time.perf_counter()
    assert main([*tail, "--from-beginning", "--timeout", "1"]) == 0
    assert capsys.readouterr().out == out and time.perf_counter() - t0 < 10
    assert main([*tail, "--timeout", "1"]) == 0  # only new records: none
    assert capsys.readouterr().out == ""
