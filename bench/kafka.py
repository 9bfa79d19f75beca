"""Kafka and Faust: transcript produced -> enriched consumed, on the local broker.

Starts Tansu (``callstream dev-broker``'s broker) on loopback and
``callstream agents`` as a child process (``stream.devbroker.running_agents``), produces finals to the
transcripts topic and consumes the enriched topic. Latency phase: one final
every 20 ms (each timed from its send to the arrival of its enriched event).
Throughput phase: a burst of finals, records per second from the first send
to the last enriched record.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import percentile, table
from stream import codec
from stream.devbroker import TANSU_FETCH_MAX_WAIT_MS, running_agents, running_broker
from stream.events import Enriched, Final, Word

TEXTS = ["i lost my card yesterday", "what is my balance", "my card number is four one one one one one one one",
         "i want to dispute a charge from the store", "can you block my card please"]


def _final(call: str, index: int) -> Final:
    text = TEXTS[index % len(TEXTS)]
    words = tuple(Word(w, 0.4 * i, 0.4 * i + 0.3, 0.9) for i, w in enumerate(text.split()))
    return Final(call, "customer", f"{call}/customer/{index}", index, text, words, start=0.0, end=0.4 * len(words))


async def _measure(bootstrap: str, topics: list[str], n: int) -> dict:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, 2, 1) for t in topics])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, enable_idempotence=False)
    consumer = AIOKafkaConsumer(topics[1], bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                fetch_max_wait_ms=TANSU_FETCH_MAX_WAIT_MS)
    await producer.start()
    await consumer.start()
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def consume(want: set[str], timeout_s: float) -> None:
        deadline = time.perf_counter() + timeout_s
        while not want <= arrived.keys() and time.perf_counter() < deadline:
            for batch in (await consumer.getmany(timeout_ms=50)).values():
                now = time.perf_counter()
                for record in batch:
                    arrived.setdefault(codec.decode(record.value).transcript.utterance_id, now)

    try:
        # Warm-up: the agents join their group and load their models.
        warm = _final("warm", 0)
        while warm.utterance_id not in arrived:
            await producer.send_and_wait(topics[0], codec.encode(warm), key=b"warm")
            await consume({warm.utterance_id}, 5.0)
        ids = []
        reader = asyncio.create_task(consume({f"lat-{i % 8}/customer/{i}" for i in range(n)}, 120.0))
        for i in range(n):
            f = _final(f"lat-{i % 8}", i)
            sent[f.utterance_id] = time.perf_counter()
            await producer.send_and_wait(topics[0], codec.encode(f), key=f.stream_id.encode())
            ids.append(f.utterance_id)
            await asyncio.sleep(0.02)
        await reader
        latency = [1000 * (arrived[i] - sent[i]) for i in ids if i in arrived]
        # The broker alone: the same records straight to the enriched topic, no agents between.
        direct = []
        for i in range(n // 2):
            f = _final(f"rtt-{i % 8}", i)
            t0 = time.perf_counter()
            await producer.send_and_wait(topics[1], codec.encode(Enriched(transcript=f, redacted_text=f.text)), key=f.stream_id.encode())
            await consume({f.utterance_id}, 5.0)
            if f.utterance_id in arrived:
                direct.append(1000 * (arrived[f.utterance_id] - t0))
            await asyncio.sleep(0.02)
        burst = [_final(f"burst-{i % 16}", i) for i in range(n)]
        t0 = time.perf_counter()
        for f in burst:
            await producer.send(topics[0], codec.encode(f), key=f.stream_id.encode())
        await producer.flush()
        await consume({f.utterance_id for f in burst}, 120.0)
        done = [arrived[f.utterance_id] for f in burst if f.utterance_id in arrived]
        rate = len(done) / max(max(done, default=t0) - t0, 1e-9)
    finally:
        await producer.stop()
        await consumer.stop()
    return {"n": n, "received": len(latency), "p50_ms": percentile(latency, 50), "p99_ms": percentile(latency, 99),
            "broker_hop_p50_ms": percentile(direct, 50), "broker_hop_p99_ms": percentile(direct, 99),
            "records_per_s": rate, "burst_received": len(done)}


def transcript_to_enriched(n: int) -> tuple[str, dict]:
    tag = uuid.uuid4().hex[:8]
    topics = [f"bench-tr-{tag}", f"bench-en-{tag}"]
    with running_broker() as broker, tempfile.TemporaryDirectory(prefix="callstream-agents-") as tables, \
            running_agents(broker.bootstrap, f"bench-{tag}", *topics, cwd=Path(tables)):
        r = asyncio.run(_measure(broker.bootstrap, topics, n))
    text = table(f"Kafka -> Faust agents -> Kafka on the local broker (Tansu), {n} finals",
                 ["measure", "value"],
                 [("transcript -> enriched p50 ms", r["p50_ms"]), ("transcript -> enriched p99 ms", r["p99_ms"]),
                  ("one broker hop (produce -> consume, no agents) p50 / p99 ms",
                   f"{r['broker_hop_p50_ms']:.2f} / {r['broker_hop_p99_ms']:.2f}"),
                  ("records per second (burst)", r["records_per_s"]),
                  ("received (paced / burst)", f"{r['received']} / {r['burst_received']}")])
    return text, r
