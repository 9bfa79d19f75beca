"""Cross-stream micro-batcher: the recogniser's work for many streams, off the event loop.

Streams that have audio to decode submit themselves and await their events.
A single collector task gathers submissions for up to ``max_wait_ms`` (or
until ``max_batch`` channels) and runs ``Pipeline.decode_streams`` over all
of them on the recogniser thread: one model call for their ready chunks,
then the search, endpoints and second pass. Every other call into the
recogniser (audio in, finalize, finish) runs on that same thread too, so a
stream's state is only ever touched by one thread, and the event loop never
runs model, feature or search work. The partials' refreshes by the second
pass, when turned on, run on a thread of their own on copies of the audio's
features (``Pipeline.refresh_executor``), so finals never wait behind them.

Per stream, order holds: a stream has at most one call in flight (it awaits
its events before submitting again), and the thread runs calls in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from stream.events import Enriched, Event
from stream.pipeline import Pipeline, StreamState

__all__ = ["BatcherConfig", "MicroBatcher"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 64  # channels per model call
    max_wait_ms: float = 5.0  # how long the first stream waits for company


@dataclass
class _Job:
    state: StreamState
    future: asyncio.Future[list[Event]]


class MicroBatcher:
    def __init__(self, pipeline: Pipeline, config: BatcherConfig | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or BatcherConfig()
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        # One recogniser thread: onnxruntime parallelises inside a call, and the search holds
        # the GIL, so a second thread would only fight over the same cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-recognizer")
        # The partials' refreshes, if any; the server pauses them when the recogniser has no room
        # (stream.load).
        self._refresher = pipeline.refresh_in_thread()
        self._task: asyncio.Task[None] | None = None
        self.busy_s = 0.0  # seconds the recogniser thread has worked: what admission measures (stream.load)
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
        # Calls still queued are dropped (a shutdown past its grace); the running one finishes.
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._refresher is not None:
            self._refresher.shutdown(wait=True, cancel_futures=True)

    async def call(self, fn: Callable[..., _T], *args: object) -> _T:
        """``fn(*args)`` on the recogniser thread: one stream's audio, finalize or finish."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, fn, *args)

    def _timed(self, fn: Callable[..., _T], *args: object) -> _T:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.busy_s += time.perf_counter() - t0

    async def decode(self, state: StreamState) -> list[Event]:
        """The stream's events from decoding what it has ready, batched with other streams."""
        if not self.pipeline.is_ready(state):
            return []
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(state, future))
        return await future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].state.channels)
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
                size += len(job.state.channels)
            try:
                results = await loop.run_in_executor(self._executor, self._timed, self._decode, jobs)
            except Exception as exc:  # a failed batch fails its submitters, never the collector
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, events in zip(jobs, results):
                if not job.future.done():
                    job.future.set_result(events)

    def _decode(self, jobs: list[_Job]) -> list[list[Event]]:
        t0 = time.perf_counter()
        events = self.pipeline.decode_streams([job.state for job in jobs])
        if self.on_batch is not None:
            self.on_batch(sum(len(job.state.channels) for job in jobs), time.perf_counter() - t0)
        by_stream: dict[str, list[Event]] = {job.state.stream_id: [] for job in jobs}
        for ev in events:
            by_stream[ev.transcript.stream_id if isinstance(ev, Enriched) else ev.stream_id].append(ev)
        return [by_stream[job.state.stream_id] for job in jobs]
