"""Faust enrichment agents (``callstream agents``): transcripts topic in, enriched topic out.

Each final transcript is enriched by the same operator the in-process mode
uses (``operators.enrich``) and published keyed by call id. What the agent
decides (drop repeats by final id, each call's enrichment state) is the pure
operator ``operators.calls``; the agent decodes, calls it and sends.

The agent keeps no Faust table. Whenever its partitions are assigned, it
reads back the newest enriched events before its next final
(``_published_ids``): a worker killed between sending an enriched event and
committing the final's offset leaves that final to its successor, which must
not send it twice. A changelog-backed table did the same job, but restoring
it when a worker started made faust-streaming 0.15.3 skip finals after a
restart on about half of the restarts (docs/reliability.md).

Latency: faust-streaming hard-codes ``fetch_max_wait_ms=1500`` for its
consumer, so every record could wait 1.5 s at the broker. The
``callstream://`` transport below is Faust's aiokafka transport with that one
setting taken from ``AgentsConfig.fetch_max_wait_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

from operators.calls import CallTracker
from operators.enrich import EnrichConfig, Enricher, default_enricher
from operators.intent import ENCODERS, IntentConfig
from stream import codec
from stream.errors import CodecError
from stream.events import Enriched
from stream.kafka import read_topic

__all__ = ["AgentsConfig", "LowLatencyTransport", "add_arguments", "create_app", "run"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentsConfig:
    bootstrap: str = "127.0.0.1:9092"
    app_id: str = "callstream-agents"
    transcripts_topic: str = "callstream.transcripts"
    enriched_topic: str = "callstream.enriched"
    partitions: int = 8  # the transcripts topic's partitions: Faust creates its topics with as many
    fetch_max_wait_ms: int = 10
    session_timeout_s: float = 10.0
    rebalance_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    mask_profanity: bool = True
    # operators.intent.ENCODERS key; mpnet-base-v2 is more accurate and far slower (docs/text-intelligence.md)
    intent_encoder: str = "minilm-l6-v2"
    # Enriched events read back per partition when partitions are assigned (_published_ids). A
    # killed worker can have published what it never committed: at most what it enriched since
    # its last commit, a few seconds' worth.
    published_scan: int = 1000


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when the consumer starts its fetcher.
        consumer._fetch_max_wait_ms = getattr(self.app, "callstream_fetch_max_wait_ms", 1500)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class LowLatencyTransport(faust_aiokafka.Transport):
    Consumer = _Consumer


TRANSPORTS.aliases["callstream"] = f"{__name__}:LowLatencyTransport"


def create_app(cfg: AgentsConfig, enricher: Enricher | None = None) -> faust.App:
    """The Faust app with its agent; ``enricher`` defaults to the bundled models."""
    app = faust.App(
        cfg.app_id, broker=f"callstream://{cfg.bootstrap}", key_serializer="raw", value_serializer="raw",
        topic_partitions=cfg.partitions, web_enabled=False, producer_acks=-1,
        broker_session_timeout=cfg.session_timeout_s, broker_rebalance_timeout=cfg.rebalance_timeout_s,
        broker_heartbeat_interval=cfg.heartbeat_interval_s, consumer_auto_offset_reset="earliest",
        producer_max_batch_size=16384, stream_wait_empty=False,
    )
    app.callstream_fetch_max_wait_ms = cfg.fetch_max_wait_ms  # read by _ConsumerThread
    transcripts = app.topic(cfg.transcripts_topic, key_type=bytes, value_type=bytes)
    enriched = app.topic(cfg.enriched_topic, key_type=bytes, value_type=bytes)
    tracker = CallTracker((lambda: enricher) if enricher else default_enricher, mask_profanity=cfg.mask_profanity)
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-enrich")
    assigned = asyncio.Event()  # partitions (re)assigned since the enriched topic was last read back
    assigned.set()

    @app.on_rebalance_complete.connect
    async def on_assigned(sender: Any, **_: Any) -> None:
        assigned.set()

    @app.agent(transcripts)
    async def enrich_transcripts(stream: Any) -> None:
        async for key, value in stream.items():
            if assigned.is_set():
                assigned.clear()
                tracker.published = await _published_ids(cfg)
            try:
                event = codec.decode(value)
            except CodecError as exc:
                _LOG.warning("dropping undecodable transcript record for %r: %s", key, exc)
                continue
            call_id = (key or b"").decode("utf-8", "replace")
            # Enrichment runs the sentence encoder: on the tracker's own thread, never on the loop.
            result = await asyncio.get_running_loop().run_in_executor(worker, tracker.handle, call_id, event)
            if result is not None:
                await enriched.send(key=key, value=codec.encode(result))

    return app


async def _published_ids(cfg: AgentsConfig, timeout_s: float = 30.0) -> set[str]:
    """The utterance ids of the newest ``cfg.published_scan`` enriched events of each partition.

    Read before the agent's first final after its partitions are assigned. ``CallTracker``
    enriches finals found there without sending them again.
    """
    ids: set[str] = set()
    records = read_topic(cfg.bootstrap, cfg.enriched_topic, fetch_max_wait_ms=cfg.fetch_max_wait_ms,
                         last=cfg.published_scan)  # fmt: skip
    try:
        async with asyncio.timeout(timeout_s), contextlib.aclosing(records):
            async for record in records:
                try:
                    event = codec.decode(record.value)
                except CodecError:
                    continue
                if isinstance(event, Enriched):
                    ids.add(event.transcript.utterance_id)
    except TimeoutError:
        _LOG.warning("reading back the enriched topic took over %.0f s; going on with %d ids", timeout_s, len(ids))
    return ids


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = AgentsConfig()
    p.add_argument("--bootstrap", default=d.bootstrap)
    p.add_argument("--app-id", default=d.app_id)
    p.add_argument("--transcripts-topic", default=d.transcripts_topic)
    p.add_argument("--enriched-topic", default=d.enriched_topic)
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--fetch-max-wait-ms", type=int, default=d.fetch_max_wait_ms,
                   help="broker-side wait per fetch (2 on the dev broker, which answers only when it runs out)")
    p.add_argument("--intent-encoder", choices=sorted(ENCODERS), default=d.intent_encoder,
                   help="sentence encoder of the intent model (mpnet-base-v2: make encoder-mpnet first)")


def run(args: argparse.Namespace) -> int:
    cfg = AgentsConfig(bootstrap=args.bootstrap, app_id=args.app_id, transcripts_topic=args.transcripts_topic,
                       enriched_topic=args.enriched_topic, partitions=args.partitions,
                       fetch_max_wait_ms=args.fetch_max_wait_ms, intent_encoder=args.intent_encoder)
    enricher = None
    if cfg.intent_encoder != AgentsConfig.intent_encoder:
        enricher = Enricher.load(EnrichConfig(intent=IntentConfig(encoder=cfg.intent_encoder)))
    app = create_app(cfg, enricher)
    worker = faust.Worker(app, loglevel="INFO")
    worker.execute_from_commandline()
    return 0
