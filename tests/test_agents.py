"""Faust enrichment agents against a real Kafka-protocol broker (Tansu on loopback)."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream import codec
from stream.devbroker import running_agents
from stream.events import EndOfStream, Enriched, Final, Word


def _final(call, index, text):
    words = tuple(Word(w, 0.5 * i, 0.5 * i + 0.4, 0.9) for i, w in enumerate(text.split()))
    return Final(call, "customer", f"{call}/customer/{index}", index, text, words, start=0.0, end=3.0)


async def _exchange(bootstrap, topics, records, want, timeout_s=60.0):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for key, value in records:
        await producer.send_and_wait(topics[0], value, key=key)
    await producer.stop()
    consumer = AIOKafkaConsumer(topics[1], bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=10)
    await consumer.start()
    out, loop = [], asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while len(out) < want and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(batch)
        # A little longer, to see that nothing more (a duplicate) arrives.
        end = loop.time() + 2.0
        while loop.time() < end:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(batch)
    finally:
        await consumer.stop()
    return out


def test_agents_enrich_finals_and_drop_duplicates_by_id(broker, tmp_path):
    pytest.importorskip("operators.enrich")
    from operators.intent import default_encoder_dir

    if not (default_encoder_dir() / "encoder.onnx").exists():
        pytest.skip("the sentence encoder is not built (make setup builds it)")
    tag = uuid.uuid4().hex[:8]
    topics = [f"tr-{tag}", f"en-{tag}"]
    with running_agents(broker.bootstrap, f"agents-{tag}", topics[0], topics[1], cwd=tmp_path) as agents:
        card = _final("call-9", 1, "my card number is four one one one one one one one one one one one one one one one")
        records = [
            (b"call-9", codec.encode(_final("call-9", 0, "i lost my card yesterday"))),
            (b"call-9", codec.encode(card)),
            (b"call-9", codec.encode(card)),  # a duplicate after an ASR worker restart
            (b"call-9", codec.encode(EndOfStream("call-9"))),
        ]
        out = asyncio.run(_exchange(broker.bootstrap, topics, records, want=2))
    log = agents.text
    events = [codec.decode(r.value) for r in out]
    assert len(events) == 2, log[-3000:]
    assert all(isinstance(e, Enriched) and r.key == b"call-9" for e, r in zip(events, out))
    assert [e.transcript.utterance_index for e in events] == [0, 1]
    assert events[0].intent is not None and events[0].intent.label != ""
    assert "card" in events[1].flags.flagged
    assert "4111" not in events[1].redacted_text and "four one one one" not in events[1].redacted_text
