"""Kafka ASR worker (``callstream asr-worker``): audio topic in, transcripts topic out.

Records of the audio topic are keyed by call id; headers carry the codec,
rate, channels, seq and sample offset (``stream.codec.audio_to_record``), and
on a call's first record its redaction modes and hotwords (``call_config``); a
record with header ``cs-end: 1`` ends the call. Workers form a consumer group,
so a call's records stay in order on one partition and one worker.

Delivery: finals are produced before the consumer offset moves past their
audio. At every utterance endpoint the worker writes the call's resume point
(the record where its open utterance began, and the next utterance index of
each channel) to a state topic keyed by call id, then commits, per partition,
the lowest resume point of the calls open on it. After a crash or a
rebalance the next owner reads the state topic, replays from the committed
offset, skips records of finished utterances, and so re-decodes exactly the
open utterances. Every final has a deterministic id (call/channel/index), so
the few finals a crash can repeat are dropped downstream by id. (The resume
points live in a topic, not in the commit metadata, because Tansu, the test
broker, does not store commit metadata.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from stream import codec
from stream.app import add_decoding_arguments, build_pipeline, decoding_from_args
from stream.errors import InputError
from stream.events import AudioChunk, EndOfStream, Event, Final, Partial, StreamConfig
from stream.pipeline import Pipeline, StreamState

__all__ = ["AsrWorker", "KafkaConfig", "add_arguments", "call_config", "ensure_topics", "read_topic", "resume_point", "run"]

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap: str = "127.0.0.1:9092"
    audio_topic: str = "callstream.audio"
    transcripts_topic: str = "callstream.transcripts"
    enriched_topic: str = "callstream.enriched"
    state_topic: str = "callstream.asr-state"  # compacted: resume points of open calls
    dead_letter_topic: str = "callstream.audio.dlq"
    group_id: str = "callstream-asr"
    partitions: int = 8  # used when the worker creates missing topics
    partials: bool = False  # also publish partial transcripts
    idempotent: bool = True  # Apache Kafka: on; Tansu (dev/test broker) lacks it
    fetch_max_wait_ms: int = 10  # the broker-side wait per fetch bounds latency
    session_timeout_ms: int = 10000
    rebalance_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 3000
    producer_batch_bytes: int = 16384


@dataclass
class _Call:
    state: StreamState
    partition: int
    resume_offset: int  # record where the oldest open utterance began
    skip_before: int = -1  # records below this offset were already finalized


class AsrWorker:
    """One consumer-group member. ``run_until`` drives it; ``stop`` ends it cleanly."""

    def __init__(self, pipeline: Pipeline, config: KafkaConfig) -> None:
        self.pipeline = pipeline
        self.config = config
        self.calls: dict[str, _Call] = {}
        self._resume: dict[str, dict] = {}  # call -> last state record
        self._stopping = asyncio.Event()
        # The model, the search and the second pass run here, never on the event loop; one thread
        # keeps each call's records in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-asr")
        # The partials' refreshes (--second-pass-partials) run beside it, so finals never wait
        # behind them (Pipeline.refresh_executor).
        self._refresher = pipeline.refresh_in_thread()
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        cfg = self.config
        await ensure_topics(cfg)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap, enable_idempotence=cfg.idempotent, acks="all",
            max_batch_size=cfg.producer_batch_bytes, linger_ms=0,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap, group_id=cfg.group_id, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            session_timeout_ms=cfg.session_timeout_ms, rebalance_timeout_ms=cfg.rebalance_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        )
        await self._producer.start()
        await self._consumer.start()
        self._consumer.subscribe([cfg.audio_topic], listener=_Listener(self))
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        await self._handle(tp.partition, record)
                    await self._commit(tp.partition)
        finally:
            await self._consumer.stop()
            await self._producer.stop()
            self._executor.shutdown(wait=True)
            if self._refresher is not None:
                self._refresher.shutdown(wait=True, cancel_futures=True)

    async def _handle(self, partition: int, record) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else ""
        headers = list(record.headers or ())
        is_end = any(k == "cs-end" and v == b"1" for k, v in headers)
        is_finalize = any(k == "cs-finalize" and v == b"1" for k, v in headers)
        call = self.calls.get(key)
        if record.offset < (call.skip_before if call else self._resume.get(key, {}).get("offset", -1)):
            return  # audio of utterances already finalized before a restart
        try:
            if is_end:
                if call is None:
                    return
                await self._publish(call, await self._off_loop(self.pipeline.finish, call.state), record.offset)
                del self.calls[key]
                await self._write_state(key, None)
                return
            if is_finalize:  # the producer knows an utterance ended (e.g. the telephony turn): flush it
                if call is not None:
                    await self._publish(call, await self._off_loop(self.pipeline.finalize, call.state), record.offset)
                return
            chunk = codec.audio_from_record(record.key, record.value, headers)
            if call is None:
                call = self._open(chunk, partition, record.offset, headers)
            events = await self._off_loop(self._decode, call.state, chunk.payload)
        except InputError as exc:
            await self._dead_letter(record, f"{exc.code}: {exc}")
            return
        await self._publish(call, events, record.offset)

    def _decode(self, state: StreamState, payload: bytes) -> list[Event]:
        self.pipeline.accept_bytes(state, payload)
        return self.pipeline.decode_streams([state])

    async def _off_loop(self, fn: Callable[..., list[Event]], *args: object) -> list[Event]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self, chunk: AudioChunk, partition: int, offset: int, headers: Sequence[tuple[str, bytes]]) -> _Call:
        saved = self._resume.get(chunk.stream_id, {})
        config = call_config(chunk, headers, partials=self.config.partials)
        state = self.pipeline.create_stream(chunk.stream_id, config, start_s=chunk.sample_offset / chunk.sample_rate,
                                   utterance_index=saved.get("next", {}))
        call = _Call(state, partition, resume_offset=offset, skip_before=saved.get("offset", -1))
        self.calls[chunk.stream_id] = call
        return call

    async def _publish(self, call: _Call, events: list[Event], offset: int) -> None:
        assert self._producer is not None
        ended = False
        for ev in events:
            if isinstance(ev, Partial) and not self.config.partials:
                continue
            ended = ended or isinstance(ev, Final)
            await self._producer.send(self.config.transcripts_topic, codec.encode(ev),
                                      key=call.state.stream_id.encode())
        if ended:
            await self._producer.flush()
            # The open utterances now begin inside this record: replay from it.
            call.resume_offset = offset
            next_index = {ch.name: ch.search.utterance_index for ch in call.state.channels}
            await self._write_state(call.state.stream_id, {"offset": offset, "next": next_index})
        if any(isinstance(ev, EndOfStream) for ev in events):
            await self._producer.flush()

    async def _write_state(self, call_id: str, value: dict | None) -> None:
        assert self._producer is not None
        payload = None if value is None else json.dumps(value).encode()
        await self._producer.send_and_wait(self.config.state_topic, payload, key=call_id.encode())
        if value is None:
            self._resume.pop(call_id, None)
        else:
            self._resume[call_id] = value

    async def _commit(self, partition: int) -> None:
        assert self._consumer is not None
        tp = TopicPartition(self.config.audio_topic, partition)
        position = await self._consumer.position(tp)
        open_offsets = [c.resume_offset for c in self.calls.values() if c.partition == partition]
        target = min([position, *open_offsets])
        committed = await self._consumer.committed(tp)
        if committed is None or target > committed:
            await self._consumer.commit({tp: target})

    async def _dead_letter(self, record, reason: str) -> None:
        assert self._producer is not None
        _LOG.warning("dead-lettering record %s@%s: %s", record.partition, record.offset, reason)
        headers = [*(record.headers or ()), ("cs-error", reason.encode()),
                   ("cs-source", f"{record.topic}/{record.partition}/{record.offset}".encode())]
        await self._producer.send_and_wait(self.config.dead_letter_topic, record.value, key=record.key,
                                           headers=headers)

    async def load_state(self) -> None:
        """Read the state topic to its end: the resume points of calls still open."""
        cfg = self.config
        async with contextlib.aclosing(read_topic(cfg.bootstrap, cfg.state_topic,
                                                  fetch_max_wait_ms=cfg.fetch_max_wait_ms)) as records:  # fmt: skip
            async for r in records:
                call = r.key.decode("utf-8", "replace") if r.key else ""
                if r.value is None:
                    self._resume.pop(call, None)
                elif (point := resume_point(r.value)) is not None:
                    self._resume[call] = point
                else:
                    _LOG.warning("ignoring state record %s of call %r: not a resume point", r.offset, call)


async def read_topic(bootstrap: str, topic: str, *, fetch_max_wait_ms: int,
                     last: int | None = None) -> AsyncIterator[ConsumerRecord]:  # fmt: skip
    """The records of every partition of ``topic`` up to its end as the read starts (the newest
    ``last`` of each partition; None: all of them), by a consumer outside any group that commits
    nothing. A topic that does not exist has none."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              fetch_max_wait_ms=fetch_max_wait_ms)  # fmt: skip
    await reader.start()
    try:
        await reader.topics()  # the metadata partitions_for_topic reads
        parts = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not parts:
            return
        reader.assign(parts)
        first, ends = await reader.beginning_offsets(parts), await reader.end_offsets(parts)
        for tp in parts:
            reader.seek(tp, first[tp] if last is None else max(first[tp], ends[tp] - last))
        # Compare positions, not the last record's offset: offsets can skip (transaction markers).
        while left := [tp for tp in parts if await reader.position(tp) < ends[tp]]:
            for records in (await reader.getmany(*left, timeout_ms=200)).values():
                for record in records:
                    yield record
    finally:
        await reader.stop()


def resume_point(value: bytes) -> dict | None:
    """The resume point a state record holds, ``{"offset": int, "next": {channel: int}}``, or None
    when it holds none. Any producer the broker lets in can write the state topic, and a worker
    that trusted its JSON crashed on the first audio of the call (AttributeError, TypeError)."""
    try:
        point = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(point, dict) or set(point) != {"offset", "next"} or not isinstance(point["next"], dict):
        return None
    counts = [point["offset"], *point["next"].values()]
    if not all(type(n) is int and n >= 0 for n in counts):
        return None
    return point


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: AsrWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        for tp in revoked:
            await self.worker._commit(tp.partition)
        lost = {tp.partition for tp in revoked}
        for call_id in [c for c, call in self.worker.calls.items() if call.partition in lost]:
            del self.worker.calls[call_id]

    async def on_partitions_assigned(self, assigned) -> None:
        await self.worker.load_state()


async def ensure_topics(cfg: KafkaConfig, only: Sequence[str] | None = None) -> None:
    """Create the topics the flow uses (or ``only`` these of them), if missing, with ``cfg.partitions`` partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=cfg.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        flow = [cfg.audio_topic, cfg.transcripts_topic, cfg.enriched_topic, cfg.dead_letter_topic, cfg.state_topic]
        missing = [t for t in flow if t not in existing and (only is None or t in only)]
        topics = [NewTopic(t, 1, 1, topic_configs={"cleanup.policy": "compact"}) if t == cfg.state_topic
                  else NewTopic(t, cfg.partitions, 1) for t in missing]
        if topics:
            try:
                await admin.create_topics(topics)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = KafkaConfig()
    p.add_argument("--bootstrap", default=d.bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--audio-topic", default=d.audio_topic)
    p.add_argument("--transcripts-topic", default=d.transcripts_topic)
    p.add_argument("--state-topic", default=d.state_topic, help="compacted topic of resume points")
    p.add_argument("--dead-letter-topic", default=d.dead_letter_topic)
    p.add_argument("--group-id", default=d.group_id)
    p.add_argument("--partitions", type=int, default=d.partitions, help="for topics the worker creates")
    p.add_argument("--session-timeout-ms", type=int, default=d.session_timeout_ms,
                   help="how soon the group notices a dead worker")
    p.add_argument("--heartbeat-interval-ms", type=int, default=d.heartbeat_interval_ms)
    p.add_argument("--partials", action="store_true", help="also publish partial transcripts")
    p.add_argument("--no-idempotence", action="store_true", help="for brokers without it (Tansu)")
    p.add_argument("--fetch-max-wait-ms", type=int, default=d.fetch_max_wait_ms,
                   help="broker-side wait per fetch (2 on the dev broker, which answers only when it runs out)")
    p.add_argument("--model", help="ONNX acoustic model (default: bundled int8)")
    add_decoding_arguments(p)


def run(args: argparse.Namespace) -> int:
    cfg = KafkaConfig(bootstrap=args.bootstrap, audio_topic=args.audio_topic,
                      transcripts_topic=args.transcripts_topic, state_topic=args.state_topic,
                      dead_letter_topic=args.dead_letter_topic, group_id=args.group_id, partitions=args.partitions,
                      partials=args.partials, idempotent=not args.no_idempotence,
                      session_timeout_ms=args.session_timeout_ms, rebalance_timeout_ms=args.session_timeout_ms,
                      heartbeat_interval_ms=args.heartbeat_interval_ms, fetch_max_wait_ms=args.fetch_max_wait_ms)
    worker = AsrWorker(build_pipeline(model=args.model, decoding=decoding_from_args(args)), cfg)
    logging.basicConfig(level=logging.INFO)
    try:
        asyncio.run(worker.run())
    except KafkaConnectionError as e:
        raise SystemExit(f"callstream asr-worker: cannot reach Kafka at {args.bootstrap}: {e}") from e
    except KeyboardInterrupt:
        pass
    return 0


def call_config(chunk: AudioChunk, headers: Sequence[tuple[str, bytes]], *, partials: bool = True) -> StreamConfig:
    """A call's stream config from its first record: the audio format, and the optional
    ``cs-redact`` and ``cs-hotwords`` headers. Bad values raise ``InputError`` (here or when the
    recogniser opens the call), which dead-letters the record."""
    config = StreamConfig(sample_rate=chunk.sample_rate, encoding=chunk.encoding, channels=chunk.channels,
                          interim_results=partials)
    redact = _redact_modes(headers)
    if redact is not None:
        config = replace(config, redact=redact)
    hotwords = _header(headers, "cs-hotwords")
    if hotwords is not None:
        config = replace(config, hotwords=codec.hotwords_from_header(hotwords))
    return config


def _redact_modes(headers: Sequence[tuple[str, bytes]]) -> tuple[str, ...] | None:
    """The call's redaction modes from its ``cs-redact`` header ("pci,phone"; "none": raw), else None.

    Unknown modes are left for ``Pipeline.open`` to refuse, which dead-letters the record.
    """
    value = _header(headers, "cs-redact")
    if value is None:
        return None
    text = value.decode("utf-8", "replace").strip()
    return () if text == "none" else tuple(m.strip() for m in text.split(",") if m.strip())


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    """The first value of header ``name``, or None."""
    return next((v for k, v in headers if k == name), None)
