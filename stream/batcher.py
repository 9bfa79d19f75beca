"""Cross-stream micro-batcher: one acoustic call for the ready chunks of many streams.

Streams submit their ready channels and await the events. A single
collector task gathers submissions for up to ``max_wait_ms`` (or until
``max_batch`` channels), then runs the acoustic model and the CTC decoding
of the whole batch in an executor thread, so the event loop never runs
inference. onnxruntime releases the GIL, so the loop keeps serving sockets
meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from stream.events import Event
from stream.pipeline import ChannelState, Pipeline

__all__ = ["BatcherConfig", "MicroBatcher"]


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
        # would only fight over the same cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-infer")
        self._task: asyncio.Task[None] | None = None
        self.on_batch: Callable[[int, float], None] | None = None  # (channels, seconds) per batch

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
        self._executor.shutdown(wait=True)

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
                results = await loop.run_in_executor(self._executor, self._infer, jobs)
            except Exception as exc:  # a failed batch fails its submitters, never the collector
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, events in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(events)

    def _infer(self, jobs: list[_Job]) -> list[list[Event]]:
        t0 = time.perf_counter()
        channels = [ch for job in jobs for ch in job.channels]
        log_probs = self.pipeline.acoustic.feed_batch([ch.acoustic for ch in channels])
        out: list[list[Event]] = []
        i = 0
        for job in jobs:
            events: list[Event] = []
            for ch in job.channels:
                events.extend(self.pipeline.decode(ch, log_probs[i]))
                i += 1
            out.append(events)
        if self.on_batch is not None:
            self.on_batch(len(channels), time.perf_counter() - t0)
        return out
