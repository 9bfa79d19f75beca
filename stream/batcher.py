"""Cross-stream micro-batcher: one acoustic call for the ready chunks of many streams.

Streams submit their ready channels and await the events. A single
collector task gathers submissions for up to ``max_wait_ms`` (or until
``max_batch`` channels) and runs the acoustic model of the whole batch on
the inference thread; the CTC decoding of that batch then runs on a second
thread while the collector goes on to the next batch. The event loop never
runs inference, and since onnxruntime releases the GIL, batch N+1's model
call overlaps batch N's beam search (pure Python) on another core.

Per stream, order holds: a stream has at most one chunk in flight (it awaits
its events before submitting again), and decoding runs batches in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stream.events import Event
from stream.pipeline import ChannelState, Pipeline

__all__ = ["BatcherConfig", "MicroBatcher"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 64  # channels per acoustic call
    max_wait_ms: float = 5.0  # how long the first chunk waits for company


@dataclass
class _Job:
    channels: list[ChannelState]
    future: asyncio.Future[list[Event]]


class MicroBatcher:
    def __init__(self, pipeline: Pipeline, config: BatcherConfig | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or BatcherConfig()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        # One inference thread: onnxruntime parallelises inside a call; two calls at once
        # would only fight over the same cores. One decoding thread: beam search holds the GIL.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-infer")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-decode")
        self._task: asyncio.Task[None] | None = None
        self._decoding: set[asyncio.Task[None]] = set()
        self.on_batch: Callable[[int, float], None] | None = None  # (channels, acoustic seconds) per batch

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._collect(), name="callstream-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._decoding:
            await asyncio.gather(*self._decoding, return_exceptions=True)
        self._executor.shutdown(wait=True)
        self._decoder.shutdown(wait=True)

    async def call(self, fn: Callable[..., _T], *args: object) -> _T:
        """``fn(*args)`` on the decoding thread: one stream's endpoint, finalize or finish.

        These run the model and the search (and the second pass on finals), so never on the
        event loop; on the decoding thread they keep their order with that stream's chunks.
        """
        return await asyncio.get_running_loop().run_in_executor(self._decoder, fn, *args)

    async def run(self, channels: list[ChannelState]) -> list[Event]:
        """Run one chunk for each of ``channels`` (all ready) and return the decoded events."""
        if not channels:
            return []
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(channels, future))
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].channels)
            deadline = loop.time() + self.config.max_wait_ms / 1000.0
            while size < self.config.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                jobs.append(job)
                size += len(job.channels)
            try:
                log_probs = await loop.run_in_executor(self._executor, self._acoustic, jobs)
            except Exception as exc:  # a failed batch fails its submitters, never the collector
                _fail(jobs, exc)
                continue
            task = asyncio.create_task(self._decode(jobs, log_probs))
            self._decoding.add(task)
            task.add_done_callback(self._decoding.discard)

    async def _decode(self, jobs: list[_Job], log_probs: list) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._decoder, self._ctc, jobs, log_probs)
        except Exception as exc:
            _fail(jobs, exc)
            return
        for job, events in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(events)

    def _acoustic(self, jobs: list[_Job]) -> list:
        t0 = time.perf_counter()
        channels = [ch for job in jobs for ch in job.channels]
        log_probs = self.pipeline.acoustic.feed_batch([ch.acoustic for ch in channels])
        if self.on_batch is not None:
            self.on_batch(len(channels), time.perf_counter() - t0)
        return log_probs

    def _ctc(self, jobs: list[_Job], log_probs: list) -> list[list[Event]]:
        out: list[list[Event]] = []
        i = 0
        for job in jobs:
            events: list[Event] = []
            for ch in job.channels:
                events.extend(self.pipeline.decode(ch, log_probs[i]))
                i += 1
            out.append(events)
        return out


def _fail(jobs: list[_Job], exc: Exception) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
