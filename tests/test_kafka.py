"""Kafka ASR worker against a real Kafka-protocol broker (Tansu on loopback)."""

import asyncio
import uuid

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from operators.audio import encode_audio
from stream import codec
from stream.events import AudioChunk, EndOfStream
from stream.kafka import AsrWorker, KafkaConfig


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
