"""Kafka clients for integrators: ``callstream kafka-send`` and ``callstream kafka-tail``.

``kafka-send`` is the reference producer of the audio topic: each file is one
call, sent as audio records keyed by its call id with the headers the ASR
worker reads (``stream.codec.audio_to_record``), then the record that ends the
call. ``kafka-tail`` prints the events of the transcripts or enriched topic as
``callstream demo`` prints them (``stream.display``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from models.evaluate import read_call
from operators.audio import encode_audio
from operators.redaction import check_modes
from stream import codec
from stream.display import EventPrinter
from stream.errors import CodecError, InputError, TransportError
from stream.events import AudioChunk
from stream.kafka import KafkaConfig, ensure_topics

__all__ = ["CHUNK_S", "Call", "add_send_arguments", "add_tail_arguments", "call_records", "load_call", "run_send",
           "run_tail", "send_calls", "start_client", "tail"]

CHUNK_S = 0.1  # s of audio per record
_DEFAULTS = KafkaConfig()
TOPIC_NAMES = {"enriched": _DEFAULTS.enriched_topic, "transcripts": _DEFAULTS.transcripts_topic}


@dataclass(frozen=True)
class Call:
    """One call to send: float32 samples of shape (frames, channels) and how they go on the wire."""

    call_id: str
    audio: np.ndarray
    sample_rate: int  # Hz
    encoding: str  # pcm16 | f32 | mulaw | alaw
    name: str = ""  # where the audio came from, for messages

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / self.sample_rate


def load_call(path: Path, call_id: str | None = None) -> Call:
    """A call from a file; its id defaults to the file's stem plus a random suffix.

    The suffix keeps a file sent twice apart: the agents drop finals whose ids they
    have seen, and final ids begin with the call id.
    """
    audio, rate, encoding = read_call(path)
    return Call(call_id or f"{path.stem}-{uuid.uuid4().hex[:8]}", audio, rate, encoding, path.name)


def call_records(call: Call, chunk_s: float = CHUNK_S, redact: str | None = None,
                 ) -> Iterator[tuple[float, tuple[bytes, bytes, list[tuple[str, bytes]]]]]:
    """The call's records in order, each with the audio time (s) by which a live source has it.

    Audio records of ``chunk_s`` each, then the record that ends the call. ``redact``
    (header ``cs-redact``: modes, comma-separated, or "none") goes on every audio record.
    """
    step = max(1, int(call.sample_rate * chunk_s))
    frames, channels = call.audio.shape
    for seq, i in enumerate(range(0, frames, step)):
        chunk = AudioChunk(call.call_id, seq, i, call.sample_rate, call.encoding, channels,
                           encode_audio(call.audio[i : i + step], call.encoding))
        key, value, headers = codec.audio_to_record(chunk)
        if redact is not None:
            headers.append(("cs-redact", redact.encode()))
        yield min(i + step, frames) / call.sample_rate, (key, value, headers)
    yield frames / call.sample_rate, codec.end_of_call_record(call.call_id)


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    # aiokafka logs every refused connection before it raises; the caller's one-line error says it instead.
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


async def start_client(client: AIOKafkaProducer | AIOKafkaConsumer, bootstrap: str) -> None:
    """Start an aiokafka producer or consumer; a broker out of reach raises ``TransportError``."""
    with _quiet_aiokafka():
        try:
            await client.start()
        except KafkaConnectionError as e:
            await client.stop()
            raise TransportError(f"cannot reach Kafka at {bootstrap}") from e


async def send_calls(bootstrap: str, topic: str, calls: Sequence[Call], *, realtime: bool = False,
                     chunk_s: float = CHUNK_S, on_sent: Callable[[Call, int], None] | None = None,
                     redact: str | None = None) -> list[int]:
    """Send the calls side by side (each in order); the number of records of each.

    ``realtime`` sends each record when a live source would have its audio.
    ``on_sent(call, records)`` runs once the broker has acknowledged a whole call.
    The topic is created, if missing, with the partitions the ASR worker would give it.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, acks="all")
    await start_client(producer, bootstrap)
    try:
        await ensure_topics(KafkaConfig(bootstrap=bootstrap, audio_topic=topic), only=[topic])
        return list(await asyncio.gather(*(_send(producer, topic, c, realtime, chunk_s, on_sent, redact)
                                           for c in calls)))
    except KafkaError as e:
        raise TransportError(f"sending to Kafka at {bootstrap} failed: {e}") from e
    finally:
        await producer.stop()


async def _send(producer: AIOKafkaProducer, topic: str, call: Call, realtime: bool, chunk_s: float,
                on_sent: Callable[[Call, int], None] | None, redact: str | None) -> int:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    pending = []
    for at, (key, value, headers) in call_records(call, chunk_s, redact):
        if realtime:
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
        # aiokafka keeps one request in flight per broker, so the records of a call stay in order.
        pending.append(await producer.send(topic, value, key=key, headers=headers))
    await asyncio.gather(*pending)
    if on_sent is not None:
        on_sent(call, len(pending))
    return len(pending)


async def tail(bootstrap: str, topic: str, printer: EventPrinter, *, from_beginning: bool = False,
               max_records: int | None = None, timeout_s: float | None = None,
               fetch_max_wait_ms: int = _DEFAULTS.fetch_max_wait_ms) -> int:
    """Print the topic's events until ``max_records`` records or ``timeout_s`` without one; the records read.

    Reads every partition without a consumer group, so it commits nothing and
    disturbs no worker. Records that are not callstream events are named on stderr.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest" if from_beginning else "latest",
                                fetch_max_wait_ms=fetch_max_wait_ms)
    await start_client(consumer, bootstrap)
    loop = asyncio.get_running_loop()
    read, last = 0, loop.time()
    try:
        while max_records is None or read < max_records:
            if timeout_s is not None and loop.time() - last >= timeout_s:
                break
            left = None if max_records is None else max_records - read
            for records in (await consumer.getmany(timeout_ms=100, max_records=left)).values():
                for r in records:
                    read, last = read + 1, loop.time()
                    try:
                        if r.value is None:
                            raise CodecError("empty record")
                        event = codec.decode(r.value)
                    except CodecError as e:
                        print(f"callstream kafka-tail: skipping {r.topic}/{r.partition}/{r.offset}: {e}",
                              file=sys.stderr)
                        continue
                    printer.show([event])
    finally:
        await consumer.stop()
    return read


def add_send_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="WAV/FLAC/OGG calls, one call each")
    p.add_argument("--call-id", help="the call id (record key) of the one FILE (default: its name plus a random suffix)")
    p.add_argument("--realtime", action="store_true", help="send each chunk when a live call would have it")
    p.add_argument("--chunk-ms", type=int, default=int(CHUNK_S * 1000), help="audio per record")
    p.add_argument("--bootstrap", default=_DEFAULTS.bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--topic", default=_DEFAULTS.audio_topic, help="the audio topic")
    p.add_argument("--redact", help="the calls' redaction modes (header cs-redact): comma-separated pci, ssn, phone, "
                                    "email, dob, numbers, or 'none' for raw transcripts (default: the worker's)")


def run_send(args: argparse.Namespace) -> int:
    if args.call_id is not None and len(args.files) > 1:
        raise InputError("--call-id names one call: give one FILE")
    if args.chunk_ms <= 0:
        raise InputError(f"--chunk-ms must be positive, got {args.chunk_ms}")
    if args.redact is not None and args.redact != "none":
        try:
            check_modes([m.strip() for m in args.redact.split(",") if m.strip()])
        except ValueError as e:
            raise InputError(f"--redact: {e}") from None
    calls = [load_call(path, args.call_id) for path in args.files]

    def sent(call: Call, records: int) -> None:
        print(f"{call.name}: call {call.call_id}, {call.seconds:.1f} s, {call.audio.shape[1]} channel(s), "
              f"{call.sample_rate} Hz {call.encoding}: {records} records to {args.topic}", flush=True)

    asyncio.run(send_calls(args.bootstrap, args.topic, calls, realtime=args.realtime,
                           chunk_s=args.chunk_ms / 1000, on_sent=sent, redact=args.redact))
    return 0


def add_tail_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--topic", default="enriched",
                   help="enriched (default), transcripts, or any topic name of callstream events")
    p.add_argument("--bootstrap", default=_DEFAULTS.bootstrap, help="Kafka bootstrap servers")
    p.add_argument("--from-beginning", action="store_true", help="from the oldest record, not only new ones")
    p.add_argument("--max", type=int, metavar="N", help="stop after N records")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds without a record")
    p.add_argument("--fetch-max-wait-ms", type=int, default=_DEFAULTS.fetch_max_wait_ms,
                   help="broker-side wait per fetch (2 on the dev broker, which answers only when it runs out)")


def run_tail(args: argparse.Namespace) -> int:
    topic = TOPIC_NAMES.get(args.topic, args.topic)
    printer = EventPrinter(partials=True, with_transcript=True, stream_headers=True)
    try:
        asyncio.run(tail(args.bootstrap, topic, printer, from_beginning=args.from_beginning, max_records=args.max,
                         timeout_s=args.timeout, fetch_max_wait_ms=args.fetch_max_wait_ms))
    except KeyboardInterrupt:
        pass
    return 0
