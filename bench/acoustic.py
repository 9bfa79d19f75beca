"""Acoustic-model speed: RTF per stream (fp32/int8, 1/2 threads) and concurrent real-time streams.

The concurrency run is the serving path without sockets: N streams each
receive 320 ms of PCM16 every 320 ms (phases spread over the chunk), push it
through decode/resample/log-mel on the event loop, and await the shared
``MicroBatcher``, which runs one acoustic call for all ready streams on its
inference thread and their CTC beam search (with the LM) on its decoding
thread. Chunk latency is from the moment a chunk's last sample arrived to the
moment its events are back. The streams are shared out over one or more
serving processes (``_Shards``), each with its own pipeline.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import time
from multiprocessing.connection import Connection

import numpy as np

from bench.common import percentile, speech_clip, table
from models.runtime import SessionOptions, default_model_path, load_acoustic
from operators.acoustic import AcousticOperator
from operators.audio import encode_audio
from operators.features import LogMelOperator
from stream.app import DecodingConfig, build_pipeline
from stream.batcher import BatcherConfig, MicroBatcher
from stream.events import StreamConfig
from stream.pipeline import Pipeline

CHUNK_S = 0.32


def single_stream_rtf(seconds: float, repeats: int = 3) -> tuple[str, dict]:
    """Acoustic-model RTF for one stream, chunk by chunk, per precision and thread count."""
    feats = LogMelOperator().feed(LogMelOperator().new_state(), speech_clip(seconds, seed=1))
    rows, raw = [], {}
    for name, quantized in (("fp32", False), ("int8", True)):
        for threads in (1, 2):
            model = load_acoustic(default_model_path(quantized), SessionOptions(intra_op_threads=threads))
            op = AcousticOperator(model)
            times = []
            for _ in range(repeats):
                state = op.new_state()
                t0 = time.perf_counter()
                op.feed(state, feats)
                times.append(time.perf_counter() - t0)
            rtf = statistics.median(times) / seconds
            raw[f"{name}_t{threads}"] = rtf
            rows.append((name, threads, model.provider, rtf, 1 / rtf))
    for threads in (1, 2):
        raw[f"int8_speedup_t{threads}"] = raw[f"fp32_t{threads}"] / raw[f"int8_t{threads}"]
    rows.append(("int8/fp32 speed-up", "1 / 2", "", raw["int8_speedup_t1"], raw["int8_speedup_t2"]))
    text = table(f"Acoustic model, one stream, {seconds:g} s of speech in 320 ms chunks (median of {repeats})",
                 ["model", "threads", "provider", "RTF", "x real time"], rows)
    return text, raw


def full_pipeline_rtf(seconds: float, threads: int = 1) -> dict:
    """Whole-pipeline RTF of one stream (features, acoustic, beam search with the LM), 100 ms chunks."""
    pipeline = build_pipeline(threads=threads, decoding=DecodingConfig())
    audio = encode_audio(speech_clip(seconds, seed=2), "pcm16")
    state = pipeline.create_stream("rtf", StreamConfig(sample_rate=16000, encoding="pcm16"))
    step = 3200
    t0 = time.perf_counter()
    for i in range(0, len(audio), step):
        pipeline.accept_bytes(state, audio[i : i + step])
        pipeline.decode_streams([state])
    pipeline.finish(state)
    return {"pipeline_rtf": (time.perf_counter() - t0) / seconds}


async def _drive(pipeline: Pipeline, streams: range, n: int, seconds: float, audio: bytes,
                 batcher: BatcherConfig, start_at: float) -> dict:
    """Drive ``streams`` (indices among ``n``) in real time from wall-clock ``start_at``; raw figures."""
    mb = MicroBatcher(pipeline, batcher)
    sizes: list[int] = []
    mb.on_batch = lambda channels, _s: sizes.append(channels)
    await mb.start()
    loop = asyncio.get_running_loop()
    chunk_bytes = int(CHUNK_S * 16000) * 2
    n_chunks = max(1, int(seconds / CHUNK_S))
    span = n_chunks * chunk_bytes
    latencies: list[float] = []
    start = loop.time() + max(0.0, start_at - time.time())

    async def stream(i: int) -> None:
        state = pipeline.create_stream(f"bench-{i}", StreamConfig(sample_rate=16000, encoding="pcm16"))
        base = (i * 44_100 * 2) % max(2, len(audio) - span) // 2 * 2
        phase = CHUNK_S * i / n
        for k in range(n_chunks):
            due = start + phase + (k + 1) * CHUNK_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            await mb.call(pipeline.accept_bytes, state, audio[base + k * chunk_bytes : base + (k + 1) * chunk_bytes])
            await mb.decode(state)
            latencies.append(loop.time() - due)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(stream(i) for i in streams))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await mb.close()
    return {"latencies": latencies, "cpu": cpu, "wall": wall, "sizes": sizes,
            "audio_s": len(streams) * n_chunks * CHUNK_S}


def _shard(conn: Connection, threads: int, max_batch: int) -> None:
    """One serving process of the bench: its own pipeline, driving the streams it is sent.

    The first pass only: a final's second pass runs in the same decoding call as the chunk that
    ends its utterance, so with it every chunk latency p99 is a second pass (0.66 s with one
    stream) and this bench would measure nothing else. The soak measures streams with it.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    pipeline = build_pipeline(threads=threads, decoding=DecodingConfig(second_pass=False))
    audio = encode_audio(speech_clip(60.0, seed=3), "pcm16")
    cfg = BatcherConfig(max_batch=max_batch, max_wait_ms=5.0)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        streams, n, seconds, start_at = job
        conn.send(asyncio.run(_drive(pipeline, streams, n, seconds, audio, cfg, start_at)))


class _Shards:
    """``processes`` serving processes, each with its own pipeline, micro-batcher and share of the streams.

    One Python process runs the event loop, the front end and the beam search under one GIL, so
    it tops out near one core whatever the thread count. A production deployment runs a worker
    per core (Kafka consumer-group members, or server replicas behind the load balancer); this
    measures that, with every process's streams interleaved in time.
    """

    def __init__(self, processes: int, threads: int, max_batch: int) -> None:
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_shard, args=(child, threads, max_batch), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise RuntimeError("a bench serving process failed to start")

    def run(self, n: int, seconds: float) -> dict:
        start_at = time.time() + 0.5
        k = len(self.conns)
        for j, conn in enumerate(self.conns):
            conn.send((range(j, n, k), n, seconds, start_at))
        raws = [conn.recv() for conn in self.conns]
        latencies = [x for r in raws for x in r["latencies"]]
        sizes = [x for r in raws for x in r["sizes"]]
        cpu = sum(r["cpu"] for r in raws)
        return {
            "streams": n,
            "p50_ms": 1000 * percentile(latencies, 50),
            "p99_ms": 1000 * percentile(latencies, 99),
            "rtf_per_stream": cpu / sum(r["audio_s"] for r in raws),
            "cpu_cores": cpu / max(r["wall"] for r in raws),
            "mean_batch": float(np.mean(sizes)) if sizes else 0.0,
            "realtime": percentile(latencies, 99) < CHUNK_S,
        }

    def close(self) -> None:
        for conn in self.conns:
            conn.send(None)
        for proc in self.procs:
            proc.join(timeout=10)


def concurrent_streams(levels: list[int], seconds: float, search: bool, threads: int = 1, processes: int = 1,
                       max_batch: int = 128) -> tuple[str, dict]:
    """Chunk latency over concurrent real-time streams, LM on; then the largest real-time count."""
    shards = _Shards(processes, threads, max_batch)
    try:
        results = [shards.run(n, seconds) for n in levels]
        passing = [r["streams"] for r in results if r["realtime"]]
        best = max(passing, default=0)
        if search:
            failing = min((r["streams"] for r in results if not r["realtime"]), default=None)
            while failing is None and best < 1024:
                r = shards.run(best * 2, seconds)
                results.append(r)
                best, failing = (r["streams"], None) if r["realtime"] else (best, r["streams"])
            lo, hi = best, failing
            while hi is not None and hi - lo > max(4, lo // 8):
                mid = (lo + hi) // 2
                r = shards.run(mid, seconds)
                results.append(r)
                lo, hi = (mid, hi) if r["realtime"] else (lo, mid)
            best = lo
    finally:
        shards.close()
    rows = [(r["streams"], r["p50_ms"], r["p99_ms"], r["rtf_per_stream"], r["cpu_cores"], r["mean_batch"],
             "yes" if r["realtime"] else "no") for r in sorted(results, key=lambda r: r["streams"])]
    text = table(f"Concurrent real-time streams, first pass ({processes} serving process(es), each: int8, LM on, "
                 "no second pass, onnxruntime "
                 f"on {threads} thread(s) + a CTC decoding thread; chunk 320 ms, {seconds:g} s each)",
                 ["streams", "p50 ms", "p99 ms", "RTF/stream", "CPU cores", "batch", "p99<320ms"], rows)
    text += f"max real-time streams (p99 chunk latency < 320 ms), {processes} process(es): {best}\n"
    return text, {"levels": results, "max_realtime_streams": best, "processes": processes}
