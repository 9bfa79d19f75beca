"""End to end over WebSocket on loopback: N clients stream real speech at real-time pace.

The server is ``callstream serve``'s ``WebSocketServer`` with the bundled
models and in-process enrichment, in this process; the clients run in a child
process, as they would on other machines. Each client sends 20 ms
PCM16 frames on a real-time clock (dev utterances with 1.2 s silences, so
the 0.8 s silence rule ends utterances). Audio second ``s`` of a stream is
sent at ``t0 + s``, so:

* time to first partial: first partial with text minus the send time of the
  audio where speech starts (the first 10 ms whose energy comes within 30 dB
  of the loudest in the first 2 s: the dev clips begin with their own
  silence, up to half a second in Speech Commands);
* time to final beyond the endpoint rule: a final's arrival minus the send
  time of the audio where the rule's silence (0.8 s) after its last word ends.
  The word's end is the model's (the frame of its last character); the rule
  runs on the model's blank frames, which come a 320 ms chunk at a time, and
  on the audio's energy at 10 ms (``Pipeline.endpoint``), whichever is first.
  The rule reads the greedy path, whose last character can come after the
  beam's last word: the second figure starts from the final's ``end`` when
  that is later, which is where the rule fired (on the model's frames or on
  the energy path);
* enrichment: the ``enriched`` event's arrival minus its final's.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from multiprocessing.connection import Connection

import numpy as np
from websockets.asyncio.client import connect

from bench.common import percentile, speech_clip, table
from operators.audio import encode_audio
from stream import codec
from operators.ctc import EndpointConfig
from stream.app import DecodingConfig, build_pipeline
from stream.events import Enriched, Final, Partial, StreamConfig, StreamEnd
from stream.websocket import ServerConfig, WebSocketServer

FRAME_S = 0.02
ENDPOINT_SILENCE_S = EndpointConfig().silence_after_speech_s


def speech_onset(audio: np.ndarray) -> float:
    """Seconds into ``audio`` (16 kHz) where speech starts, by energy (see the module's doc)."""
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160).astype(np.float64)
    levels = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    return float(np.argmax(levels >= levels[:200].max() - 30.0)) * 0.01


async def _client(url: str, audio: bytes, onset_s: float, seed: int, out: dict[str, list[float]]) -> None:
    cfg = StreamConfig(sample_rate=16000, encoding="pcm16")
    frame = int(16000 * FRAME_S) * 2
    async with connect(url, max_size=None) as ws:
        await ws.send(codec.encode_client(cfg).decode())
        await ws.recv()  # the session event
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05 + (seed % 16) * FRAME_S / 16
        finals: dict[str, float] = {}

        async def send() -> None:
            for k, i in enumerate(range(0, len(audio), frame)):
                await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S - loop.time()))
                await ws.send(audio[i : i + frame])
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())

        sender = asyncio.create_task(send())
        first_partial = None
        async for message in ws:
            now = loop.time()
            event = codec.decode(message)
            if isinstance(event, Partial) and event.text and first_partial is None:
                first_partial = now - (t0 + onset_s)
                out["first_partial"].append(first_partial)
            elif isinstance(event, Final) and event.endpoint == "silence" and event.words:
                out["final"].append(now - (t0 + event.words[-1].end + ENDPOINT_SILENCE_S))
                # The rule runs on the greedy path's frames, whose last character can come after the
                # beam's last word end; where it fired later, ``end`` is where it fired.
                out["final_rule"].append(now - (t0 + max(event.end, event.words[-1].end + ENDPOINT_SILENCE_S)))
                finals[event.utterance_id] = now
            elif isinstance(event, Enriched) and event.transcript.utterance_id in finals:
                out["enrich"].append(now - finals[event.transcript.utterance_id])
        await sender


def _clients(url: str, n: int, seconds: float, conn: Connection) -> None:
    """The N clients, in their own process: in the server's, they shared its event loop and GIL
    and delayed its replies (16 clients: final p99 204-217 ms there)."""
    out: dict[str, list[float]] = {"first_partial": [], "final": [], "final_rule": [], "enrich": []}
    clips = [speech_clip(seconds, gap_s=1.2, seed=10 + i) for i in range(n)]

    async def main() -> None:
        await asyncio.gather(*(_client(url, encode_audio(clip, "pcm16"), speech_onset(clip), i, out)
                               for i, clip in enumerate(clips)))

    asyncio.run(main())
    conn.send(out)
    conn.close()


async def _run(n: int, seconds: float, threads: int) -> tuple[dict[str, list[float]], float]:
    pipeline = build_pipeline(threads=threads, decoding=DecodingConfig(), enrich=True)
    server = WebSocketServer(pipeline, ServerConfig(port=0))
    await server.start()
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    clients = ctx.Process(target=_clients, args=(f"ws://127.0.0.1:{server.port}", n, seconds, sender), daemon=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        clients.start()
        sender.close()
        out = await asyncio.get_running_loop().run_in_executor(None, receiver.recv)
        cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    finally:
        clients.join(timeout=10)
        if clients.is_alive():
            clients.kill()
        await server.close()
    return out, cores


def websocket_latency(n: int, seconds: float, threads: int = 1) -> tuple[str, dict]:
    out, cores = asyncio.run(_run(n, seconds, threads))
    ms = {k: [1000 * v for v in vals] for k, vals in out.items()}
    rows = [(name, len(ms[key]), percentile(ms[key], 50), percentile(ms[key], 99))
            for name, key in (("time to first partial", "first_partial"),
                              ("time to final beyond the endpoint rule", "final"),
                              ("the same, from where the decoder's rule fired", "final_rule"),
                              ("enriched after its final", "enrich"))]
    text = table(f"WebSocket end to end, {n} real-time clients on loopback, {seconds:g} s each "
                 f"(server used {cores:.2f} cores)", ["measure", "n", "p50 ms", "p99 ms"], rows)
    return text, {
        "clients": n, "cpu_cores": cores,
        "first_partial_p50_ms": percentile(ms["first_partial"], 50),
        "final_after_speech_p50_ms": percentile(ms["final"], 50),
        "final_after_speech_p99_ms": percentile(ms["final"], 99),
        "final_after_rule_p99_ms": percentile(ms["final_rule"], 99),
        "enrich_p50_ms": percentile(ms["enrich"], 50),
        "samples": ms,
    }
