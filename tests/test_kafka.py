"""Kafka ASR worker against a real Kafka-protocol broker (Tansu on loopback)."""

import asyncio
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from operators.audio import encode_audio
from stream import codec
from stream.events import AudioChunk, EndOfStream, Final
from stream.kafka import AsrWorker, KafkaConfig, resume_point
from tests.recognizer import kafka_reference


def _config(broker, **kw):
    tag = uuid.uuid4().hex[:8]
    return KafkaConfig(
        bootstrap=broker.bootstrap, audio_topic=f"audio-{tag}", transcripts_topic=f"tr-{tag}",
        enriched_topic=f"en-{tag}", state_topic=f"state-{tag}", dead_letter_topic=f"dlq-{tag}",
        group_id=f"g-{tag}", partitions=2, idempotent=False, session_timeout_ms=2000,
        rebalance_timeout_ms=1000, heartbeat_interval_ms=500, **kw,
    )


async def _produce_call(cfg, call_id, audio, rate=8000, frame_s=0.1, end=True, extra=()):
    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap, max_batch_size=16384)
    await producer.start()
    step = int(rate * frame_s)
    for seq, i in enumerate(range(0, len(audio), step)):
        chunk = AudioChunk(call_id, seq, i, rate, "mulaw", audio.shape[1], encode_audio(audio[i : i + step], "mulaw"))
        key, value, headers = codec.audio_to_record(chunk)
        await producer.send_and_wait(cfg.audio_topic, value, key=key, headers=headers)
    for key, value, headers in extra:
        await producer.send_and_wait(cfg.audio_topic, value, key=key, headers=headers)
    if end:
        await producer.send_and_wait(cfg.audio_topic, b"", key=call_id.encode(), headers=[("cs-end", b"1")])
    await producer.stop()


async def _read(cfg, topic, until, timeout_s=30.0):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=cfg.bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=10, enable_auto_commit=False)
    await consumer.start()
    records, deadline = [], asyncio.get_running_loop().time() + timeout_s
    try:
        while not until(records) and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import DecodingConfig, build_pipeline

    return build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4))


def test_call_flows_to_transcripts_and_bad_records_to_the_dead_letter_topic(broker, pipeline):
    cfg = _config(broker)
    audio = (0.2 * np.random.default_rng(0).standard_normal((8000 * 2, 2))).astype(np.float32)
    garbage = (b"call-x", b"\x00\x00", [("cs-encoding", b"pcm16"), ("cs-sample-rate", b"fast"), ("cs-seq", b"0"),
                                         ("cs-sample-offset", b"0"), ("cs-channels", b"1")])

    async def body():
        worker = AsrWorker(pipeline, cfg)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)
        await _produce_call(cfg, "call-1", audio, extra=[garbage])
        out = await _read(cfg, cfg.transcripts_topic,
                          lambda rs: any(isinstance(codec.decode(r.value), EndOfStream) for r in rs))
        dlq = await _read(cfg, cfg.dead_letter_topic, lambda rs: len(rs) >= 1)
        worker.stop()
        await task
        return out, dlq

    out, dlq = asyncio.run(body())
    events = [codec.decode(r.value) for r in out]
    assert all(r.key == b"call-1" for r in out)
    assert isinstance(events[-1], EndOfStream) and events[-1].stream_id == "call-1"
    assert events[-1].audio_seconds == pytest.approx(2.0)
    assert len(dlq) == 1 and dlq[0].key == b"call-x"
    reason = dict(dlq[0].headers)["cs-error"].decode()
    assert "cs-sample-rate" in reason and "not an integer" in reason


def _worker(cfg, model):
    """``callstream asr-worker`` as its own process, so that it can be killed like a crashed pod."""
    return subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "asr-worker", "--bootstrap", cfg.bootstrap, "--audio-topic",
         cfg.audio_topic, "--transcripts-topic", cfg.transcripts_topic, "--state-topic", cfg.state_topic,
         "--dead-letter-topic", cfg.dead_letter_topic, "--group-id", cfg.group_id, "--partitions", "2",
         "--session-timeout-ms", "2000", "--heartbeat-interval-ms", "300", "--no-idempotence",
         "--model", str(model), "--no-lm", "--beam", "4"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


async def _produce(cfg, records):
    producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)
    await producer.start()
    for key, value, headers in records:
        await producer.send_and_wait(cfg.audio_topic, value, key=key, headers=headers)
    await producer.stop()


def _utterance_records(call_id, audio, start, rate=8000, frame_s=0.1):
    step = int(rate * frame_s)
    out = []
    for i in range(0, len(audio), step):
        chunk = AudioChunk(call_id, (start + i) // step, start + i, rate, "mulaw", 1,
                           encode_audio(audio[i : i + step], "mulaw"))
        out.append(codec.audio_to_record(chunk))
    return out + [(call_id.encode(), b"", [("cs-finalize", b"1")])]


def test_a_killed_worker_is_replaced_without_losing_or_repeating_a_final(broker, pipeline, tiny_onnx):
    """SIGKILL the worker mid-call; a second worker finishes the call.

    After dropping repeats by id, every utterance has exactly one final, the
    finals published before the crash are those of an unbroken run, and the
    replayed utterance keeps its place in time.
    """
    cfg = _config(broker)
    rng = np.random.default_rng(5)
    utts = [(0.2 * rng.standard_normal((int(8000 * 1.28), 1))).astype(np.float32) for _ in range(4)]
    records, start = [], 0
    for u in utts:
        records.append(_utterance_records("call-7", u, start))
        start += len(u)
    first_half = records[0] + records[1] + records[2][:5]
    second_half = records[2][5:] + records[3] + [(b"call-7", b"", [("cs-end", b"1")])]

    # The reference: the same records through the same pipeline, in process, no crash.
    reference = kafka_reference(pipeline, "call-7", first_half + second_half)
    # four finalized utterances, and the tail short of a chunk that the end of the call flushes
    assert [f.utterance_index for f in reference] == [0, 1, 2, 3, 4]

    async def body():
        first = _worker(cfg, tiny_onnx["step"])
        try:
            await _produce(cfg, first_half)
            early = await _read(cfg, cfg.transcripts_topic, lambda rs: len(rs) >= 2, timeout_s=60)
        finally:
            first.kill()
            first.communicate()
        second = _worker(cfg, tiny_onnx["step"])
        try:
            await _produce(cfg, second_half)
            out = await _read(cfg, cfg.transcripts_topic,
                              lambda rs: any(isinstance(codec.decode(r.value), EndOfStream) for r in rs),
                              timeout_s=90)
        finally:
            second.terminate()
            log = second.communicate(timeout=30)[1].decode(errors="replace")
        return early, out, log

    early, out, log = asyncio.run(body())
    assert len(early) >= 2, log[-2000:]
    events = [codec.decode(r.value) for r in out]
    assert isinstance(events[-1], EndOfStream), log[-2000:]
    finals = [e for e in events if isinstance(e, Final)]
    by_id = {}
    for f in finals:
        by_id.setdefault(f.utterance_id, f)
    assert sorted(by_id) == [f.utterance_id for f in reference]
    for ref in reference[:2]:
        assert by_id[ref.utterance_id].text == ref.text and by_id[ref.utterance_id].end == ref.end
    # The replay starts at the record after the last published final: within one 320 ms chunk of
    # where the unbroken run had started that utterance (audio queued short of a chunk is not replayed).
    replayed = by_id["call-7/mono/2"]
    assert replayed.start == pytest.approx(reference[2].start, abs=0.33)
    assert replayed.end == pytest.approx(reference[2].end, abs=0.33)


@pytest.mark.parametrize(
    "value,point",
    [
        (b'{"offset": 12, "next": {"agent": 3, "customer": 0}}', {"offset": 12, "next": {"agent": 3, "customer": 0}}),
        (b"[1]", None),  # a list: AttributeError at the call's first audio record
        (b'{"offset": "5", "next": {}}', None),  # TypeError comparing record offsets with it
        (b'{"offset": 0, "next": {"mono": "x"}}', None),  # TypeError at the call's first final
        (b'{"offset": -1, "next": {}}', None),
        (b'{"offset": true, "next": {}}', None),
        (b'{"offset": 0, "next": {}, "more": 1}', None),
        (b"\xff not json", None),
        (b"[" * 100_000, None),
    ],
)
def test_state_records_that_are_not_resume_points_are_ignored(value, point):
    """Any producer the broker lets in can write the state topic: forged records must not crash a worker."""
    assert resume_point(value) == point
