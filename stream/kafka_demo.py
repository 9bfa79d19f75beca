"""``callstream demo --kafka``: the sample call through the whole Kafka flow on one machine.

It starts a local broker (Tansu on a free loopback port), the Faust agents as
a child process and the ASR worker in this process, sends the call with
``kafka-send``'s producer, and prints each enriched event as it arrives. Once
the call has ended and every final on the transcripts topic has its enriched
event, it stops the worker, then the agents, then the broker; on a timeout,
an interrupt or a failure it stops them all the same.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from stream import codec
from stream.app import build_pipeline, decoding_from_args
from stream.devbroker import TANSU_FETCH_MAX_WAIT_MS, AgentsLog, running_agents, running_broker
from stream.display import EventPrinter
from stream.errors import TransportError
from stream.events import EndOfStream, Enriched, Final, Partial
from stream.kafka import AsrWorker, KafkaConfig, ensure_topics
from stream.kafka_client import Call, load_call, send_calls, start_client
from stream.pipeline import Pipeline

__all__ = ["run_kafka"]

CALL_ID = "demo-call"  # the broker is new and empty at every run, so a fixed id cannot collide


class _AgentsExited(TransportError):
    pass


@dataclass(frozen=True)
class _Outcome:
    finals: int
    enriched_after_sent_s: float  # from the broker's acknowledgement of the call's last record to its last enriched event


def run_kafka(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    call = load_call(args.audio, CALL_ID)
    pipeline = build_pipeline(model=args.model, decoding=decoding_from_args(args))
    printer = EventPrinter(partials=args.partials, with_transcript=True)
    agents: AgentsLog | None = None
    try:
        with running_broker() as broker:
            cfg = KafkaConfig(bootstrap=broker.bootstrap, partitions=2, partials=args.partials, idempotent=False,
                              fetch_max_wait_ms=TANSU_FETCH_MAX_WAIT_MS)
            # Before the agents start: Faust would otherwise create the transcripts topic with its own partitions.
            asyncio.run(ensure_topics(cfg))
            with tempfile.TemporaryDirectory(prefix="callstream-agents-") as tables, \
                    running_agents(cfg.bootstrap, "callstream-demo-agents", cfg.transcripts_topic, cfg.enriched_topic,
                                   partitions=cfg.partitions, cwd=Path(tables)) as agents:
                print(f"callstream demo --kafka: {call.name}, {call.seconds:.1f} s, {call.audio.shape[1]} channel(s), "
                      f"{call.sample_rate} Hz {call.encoding}, as call {call.call_id}\n"
                      f"-- broker: Tansu on {cfg.bootstrap}; asr-worker: in this process, model "
                      f"{pipeline.acoustic.model.path.name} on {pipeline.acoustic.model.provider}; "
                      f"agents: pid {agents.process.pid}", flush=True)
                outcome = asyncio.run(_flow(cfg, pipeline, call, agents, printer, realtime=args.realtime,
                                            timeout_s=args.timeout))
    except _AgentsExited as e:
        last = agents.text.strip().splitlines()[-1:] if agents else []
        raise TransportError(f"{e}{': ' + last[0] if last else ''}") from e
    except KeyboardInterrupt:
        print("callstream demo: interrupted; the worker, the agents and the broker are stopped", file=sys.stderr)
        return 130
    print(f"-- {outcome.finals} finals enriched, the last {outcome.enriched_after_sent_s:.2f} s after the call's "
          f"last record was sent; worker, agents and broker stopped ({time.perf_counter() - t0:.1f} s in all)")
    return 0


async def _flow(cfg: KafkaConfig, pipeline: Pipeline, call: Call, agents: AgentsLog, printer: EventPrinter, *,
                realtime: bool, timeout_s: float) -> _Outcome:
    loop = asyncio.get_running_loop()
    worker = AsrWorker(pipeline, cfg)
    worker_task = asyncio.create_task(worker.run())
    consumer = AIOKafkaConsumer(cfg.transcripts_topic, cfg.enriched_topic, bootstrap_servers=cfg.bootstrap,
                                group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=cfg.fetch_max_wait_ms)
    sent_at: list[float] = []
    sender: asyncio.Task[list[int]] | None = None
    finals: set[str] = set()
    enriched: set[str] = set()
    end: EndOfStream | None = None
    last_enriched = loop.time()
    deadline = loop.time() + timeout_s
    try:
        await start_client(consumer, cfg.bootstrap)
        sender = asyncio.create_task(send_calls(cfg.bootstrap, cfg.audio_topic, [call], realtime=realtime,
                                                on_sent=lambda _call, _n: sent_at.append(loop.time())))
        while end is None or not finals <= enriched:
            if sender.done():
                sender.result()  # raises what failed the send
            if worker_task.done():
                worker_task.result()
                raise TransportError("the ASR worker stopped before the call was transcribed")
            if agents.process is not None and agents.process.poll() is not None:
                raise _AgentsExited(f"callstream agents exited with code {agents.process.returncode}")
            if loop.time() > deadline:
                raise TransportError(
                    f"timed out after {timeout_s:g} s: {len(finals & enriched)} of {len(finals)} finals enriched"
                    + ("" if end else ", and the call was not transcribed to its end"))
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    event = codec.decode(record.value)
                    if isinstance(event, Final):
                        finals.add(event.utterance_id)
                    elif isinstance(event, EndOfStream):
                        end = event
                    elif isinstance(event, Enriched):
                        enriched.add(event.transcript.utterance_id)
                        last_enriched = loop.time()
                        printer.show([event])
                    elif isinstance(event, Partial):
                        printer.show([event])
        await sender
        printer.show([end])
        return _Outcome(len(finals), last_enriched - sent_at[0])
    except BaseException:
        # The worker would otherwise decode the rest of its fetched batch before it looks at stop().
        worker_task.cancel()
        raise
    finally:
        worker.stop()
        if sender is not None:
            sender.cancel()
        await asyncio.gather(worker_task, *([sender] if sender else []), return_exceptions=True)
        await consumer.stop()
