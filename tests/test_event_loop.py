"""The WebSocket server's event loop never waits on model or search work.

Fifty streams of real speech, sent at real time, decode at once through the bundled recogniser
(streaming model, beam search with LMs, second pass at each endpoint) while a
probe measures how late the loop wakes from a 5 ms sleep: its lag. Model and
search work run in the micro-batcher's thread, so the lag stays small however
busy the decoding is. The test measures the lag, not its own duration, and
holds its 99th percentile under 20 ms: the single worst wake-up also counts
the operating system's scheduling of other processes on a shared machine.
"""

from __future__ import annotations

import asyncio

import numpy as np
import soundfile as sf
from websockets.asyncio.client import connect

from models.runtime import ASSETS
from operators.audio import encode_audio
from stream import codec
from stream.events import EndOfStream, Final, StreamConfig, StreamEnd
from stream.load import LoadConfig
from stream.websocket import ServerConfig, WebSocketServer

STREAMS = 50
LAG_LIMIT_S = 0.020


def _speech() -> np.ndarray:
    """6 s of the sample call's agent channel, 8 kHz: speech and a pause, so an utterance ends."""
    audio, _ = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    return audio[: 8000 * 6, 0]


async def _client(url: str, audio: np.ndarray, offset: int) -> list:
    config = StreamConfig(sample_rate=8000, encoding="pcm16")
    events = []
    async with connect(url, max_size=None) as ws:
        await ws.send(codec.encode_client(config).decode())
        step = 1600  # 200 ms, sent at real time
        x = np.roll(audio, offset)
        for i in range(0, x.size, step):
            await ws.send(encode_audio(x[i : i + step], "pcm16"))
            await asyncio.sleep(step / 8000)
        await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
        async for message in ws:
            events.append(codec.decode(message))
    return events


async def _probe(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(0.005)
        lags.append(loop.time() - t0 - 0.005)


def test_the_event_loop_lag_stays_small_while_fifty_streams_decode():
    from stream.app import build_pipeline

    pipeline = build_pipeline()
    audio = _speech()

    async def main() -> tuple[list[list], list[float]]:
        # more streams than the default limit, and no shedding: the loop is under test, not admission
        server = WebSocketServer(pipeline, ServerConfig(port=0, max_bytes_per_s=10**9, max_streams=0,
                                                        load=LoadConfig(max_lag_s=0.0)))
        await server.start()
        lags: list[float] = []
        stop = asyncio.Event()
        probe = asyncio.create_task(_probe(lags, stop))
        try:
            url = f"ws://127.0.0.1:{server.port}"
            results = await asyncio.gather(*(_client(url, audio, k * 80) for k in range(STREAMS)))
        finally:
            stop.set()
            await probe
            await server.close()
        return results, lags

    results, lags = asyncio.run(main())
    # Every stream was decoded to its end, with finals, while the probe ran.
    assert all(any(isinstance(e, EndOfStream) for e in r) for r in results)
    assert all(any(isinstance(e, Final) and e.text for e in r) for r in results)
    assert len(lags) > 100
    p99, worst = float(np.percentile(lags, 99)), max(lags)
    print(f"event-loop lag over {len(lags)} probes: p50 {np.median(lags) * 1e3:.2f} ms, "
          f"p99 {p99 * 1e3:.2f} ms, max {worst * 1e3:.2f} ms")
    assert p99 < LAG_LIMIT_S, f"the loop waited {p99 * 1e3:.1f} ms at p99 (max {worst * 1e3:.1f} ms)"
