"""Soak: N WebSocket streams of real speech at real-time pace against a ``callstream serve`` child process.

``callstream bench --only soak`` (``--quick``: 10 streams for 30 s). The
server runs as it does in production, a process of its own on loopback; the
clients run in another process, as they would on other machines. Each client
loops over real speech (dev utterances with 1.2 s pauses, or the bundled
sample call where the dev data is absent) in 100 ms PCM16 frames, sent on a
real-time clock, and ends its stream at the end. The report:

* audio: seconds sent against the seconds the server accounted in each
  stream's ``end`` event (nothing dropped: equal);
* finals per utterance id (exactly one each) and errors of any kind;
* final latency (arrival minus the send time of the audio that ended the
  utterance, ``end`` of the final) p50 / p99 per minute;
* the server's resident memory at start, middle and end, and its growth per
  hour, from ``/metrics`` (``process_resident_memory_bytes``);
* the server's event-loop lag from its probe (``callstream_event_loop_lag_seconds``).

The server runs with ``--max-streams`` of the soak's limit (``max_streams``):
a soak with more streams than that (the full run: 200 against 36) shows
admission control holding the machine's capacity, the streams beyond it
refused with ``overloaded`` (close 1013). Then an overload run at 1.5 times
the limit: the admitted streams keep their latency and the rest are refused.

``burn``: a neighbour that keeps that many cores busy (processes spinning in
10 ms slices) for both runs, as another job on the machine would. The server
then decodes fewer streams than its limit in real time; its load monitor
(``stream.load``) sheds the newest streams (``overloaded``, end reason
``overloaded``, 1013), reported apart from errors, with the audio it took from
them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from stream.devbroker import stop_process

__all__ = ["ServeProcess", "metric", "scrape", "serve_process", "soak"]

ROOT = Path(__file__).resolve().parents[1]
_LISTENING = re.compile(r"callstream serve: wss?://[^:]+:(\d+)/")


@dataclass
class ServeProcess:
    """A running ``callstream serve``; ``lines`` collects its output."""

    process: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def metrics(self) -> dict[str, float]:
        return scrape(self.port)


def scrape(port: int, timeout_s: float = 10.0) -> dict[str, float]:
    """``GET /metrics``: each sample as ``name{label="v",...}`` (labels sorted) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def metric(samples: dict[str, float], name: str, default: float = 0.0) -> float:
    return samples.get(name, default)


@contextlib.contextmanager
def serve_process(args: Sequence[str] = (), startup_s: float = 120.0) -> Iterator[ServeProcess]:
    """``python -m stream.cli serve --port 0 ARGS`` with this source tree first on the path; SIGTERM on exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    lines: list[str] = []
    port: list[int] = []
    started = threading.Event()

    def pump() -> None:  # read every line, so a chatty server never blocks on a full pipe
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            m = _LISTENING.search(line)
            if m and not port:
                port.append(int(m.group(1)))
                started.set()
        started.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        if not started.wait(startup_s) or not port:
            raise RuntimeError("callstream serve did not start:\n" + "\n".join(lines[-30:]))
        yield ServeProcess(proc, port[0], lines)
    finally:
        stop_process(proc, timeout_s=60)
        reader.join(timeout=5)
        proc.stdout.close()


FRAME_S = 0.1  # 100 ms frames: 200 clients at 20 ms were 10,000 sends a second from one Python process
_CLIPS = 8  # distinct speech clips, shared by the clients (each starts at its own offset)
_CLIP_S = 60.0


def _clips() -> list[bytes]:
    from bench.common import DATA_ROOT, speech_clip
    from operators.audio import encode_audio

    if DATA_ROOT.is_dir():
        return [encode_audio(speech_clip(_CLIP_S, gap_s=1.2, seed=100 + i), "pcm16") for i in range(_CLIPS)]
    import soundfile as sf

    from models.runtime import ASSETS
    from operators.audio import Resampler

    call, rate = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    resampler = Resampler(rate, 16000)
    mono = np.concatenate([resampler.feed(resampler.new_state(), call[:, c]) for c in range(call.shape[1])])
    return [encode_audio(np.roll(mono, i * 16000), "pcm16") for i in range(_CLIPS)]


async def _client(url: str, audio: bytes, offset: int, seconds: float, start_at: float, t_ref: float,
                  out: dict) -> None:
    """One stream: ``seconds`` of ``audio`` (looped from ``offset`` bytes) at real time, then ``end``."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from stream import codec
    from stream.events import EndOfStream, Error, Final, StreamConfig, StreamEnd

    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    frame = int(16000 * FRAME_S) * 2
    frames = int(round(seconds / FRAME_S))
    looped = audio[offset:] + audio[:offset]
    sending: list[asyncio.Task[None]] = []
    try:
        ws = await connect(url, max_size=None, open_timeout=60)
    except (OSError, asyncio.TimeoutError) as exc:
        out["errors"].append(f"connect: {exc!r}")
        return
    try:
        await ws.send(codec.encode_client(StreamConfig(sample_rate=16000, encoding="pcm16")).decode())
        first = codec.decode(await ws.recv())
        if isinstance(first, Error):
            out["refused"][first.code] = out["refused"].get(first.code, 0) + 1
            with contextlib.suppress(ConnectionClosed):
                await ws.recv()
            await ws.wait_closed()
            out["refused_close_codes"].append(ws.close_code)
            return
        out["admitted"] += 1
        t0 = loop.time()

        sent = [0]  # frames sent so far

        async def send() -> None:
            for k in range(frames):
                await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S - loop.time()))
                i = (k * frame) % len(looped)
                await ws.send(looped[i : i + frame])
                sent[0] = k + 1
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())

        sender = asyncio.create_task(send())
        sending.append(sender)
        shed = False
        async for message in _until_closed(ws, shed_ok=lambda: shed):
            now = loop.time()
            event = codec.decode(message)
            if isinstance(event, Final):
                out["finals"][event.utterance_id] = out["finals"].get(event.utterance_id, 0) + 1
                out["latency"].append((now - t_ref, now - (t0 + event.end)))
            elif isinstance(event, Error) and event.code == "overloaded":
                shed = True
            elif isinstance(event, Error):
                out["errors"].append(f"{event.code}: {event.message}")
            elif isinstance(event, EndOfStream) and shed:
                out["shed"].append((now - t_ref, event.audio_seconds, sent[0] * FRAME_S))
            elif isinstance(event, EndOfStream):
                out["audio"].append((frames * FRAME_S, event.audio_seconds, event.reason))
        if shed:  # told to go elsewhere: the audio it sends after that is not the server's to take
            return
        await sender
        if ws.close_code != 1000:
            out["errors"].append(f"close {ws.close_code}")
    except ConnectionClosed as exc:
        out["errors"].append(f"connection closed: {exc!r}")
    finally:
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)
        await ws.close()


async def _until_closed(ws: Any, shed_ok: Callable[[], bool]) -> AsyncIterator[str | bytes]:
    """The connection's messages; a close that ends a shed stream (1013) is how shedding ends."""
    from websockets.exceptions import ConnectionClosed

    try:
        async for message in ws:
            yield message
    except ConnectionClosed:
        if not shed_ok():
            raise


def _clients(url: str, n: int, seconds: float, ramp_s: float, conn: Connection) -> None:
    """The clients, in a process of their own (in the server's they would share its event loop)."""
    clips = _clips()
    out: dict = {"finals": {}, "latency": [], "audio": [], "errors": [], "refused": {}, "refused_close_codes": [],
                 "admitted": 0, "shed": []}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        t_ref = loop.time()
        await asyncio.gather(*(
            _client(url, clips[i % len(clips)], (i * 37 * 3200) % len(clips[i % len(clips)]), seconds,
                    t_ref + ramp_s * i / max(1, n), t_ref, out)
            for i in range(n)))

    asyncio.run(main())
    conn.send(out)
    conn.close()


def _burn(duty: float, stop: mp.synchronize.Event) -> None:
    """Spin ``duty`` of each 10 ms, sleep the rest, until ``stop``."""
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < 0.01 * duty:
            pass
        time.sleep(0.01 * (1.0 - duty))


@contextlib.contextmanager
def neighbour(cores: float) -> Iterator[None]:
    """Another job on the machine: ``cores`` cores' worth of busy processes while the block runs."""
    n = math.ceil(cores)
    if n <= 0:
        yield
        return
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [ctx.Process(target=_burn, args=(cores / n, stop), daemon=True) for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(timeout=5)


def _lag_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """The upper bound of the lag-histogram bucket holding quantile ``q`` of the probes between two scrapes."""
    name = "callstream_event_loop_lag_seconds_bucket"
    bounds = sorted((float(k.split('le="')[1].rstrip('"}')), k) for k in after if k.startswith(name))
    total = after.get("callstream_event_loop_lag_seconds_count", 0.0) - before.get(
        "callstream_event_loop_lag_seconds_count", 0.0)
    if total <= 0:
        return float("nan")
    for bound, key in bounds:
        if after[key] - before.get(key, 0.0) >= q * total:
            return bound
    return float("inf")


def _ramp_s(seconds: float) -> float:
    """How long the clients take to connect, one after another: a quarter of the run, at most 10 s."""
    return min(10.0, seconds / 4)


def _run(streams: int, seconds: float, serve_args: Sequence[str], scrape_s: float = 10.0) -> dict:
    """``streams`` clients for ``seconds`` against a fresh ``callstream serve``; the clients' and server's figures."""
    ramp_s = _ramp_s(seconds)
    with serve_process(serve_args) as server:
        scrapes = [(0.0, server.metrics())]
        ctx = mp.get_context("spawn")
        receiver, sender = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_clients, args=(server.url, streams, seconds, ramp_s, sender), daemon=True)
        t0 = time.monotonic()
        proc.start()
        sender.close()
        while not receiver.poll(scrape_s):
            scrapes.append((time.monotonic() - t0, server.metrics()))
            if not proc.is_alive() and not receiver.poll(1.0):
                raise RuntimeError("the soak clients died:\n" + "\n".join(server.lines[-20:]))
        out = receiver.recv()
        proc.join(timeout=30)
        scrapes.append((time.monotonic() - t0, server.metrics()))
        log = list(server.lines)
    out["scrapes"], out["server_log"], out["wall_s"] = scrapes, log[-20:], time.monotonic() - t0
    return out


def _summary(out: dict, seconds: float) -> dict:
    from bench.common import percentile

    minutes = max(1, int(np.ceil(seconds / 60.0)))
    per_minute = []
    lat = out["latency"]
    ramp = _ramp_s(seconds)
    for m in range(minutes):
        # minute m of the streams' own time: from the ramp's end on, so every stream is in
        vals = [1000 * v for t, v in lat if ramp + 60 * m <= t < ramp + 60 * (m + 1)]
        per_minute.append({"minute": m + 1, "finals": len(vals), "p50_ms": percentile(vals, 50),
                           "p99_ms": percentile(vals, 99)})
    scrapes = out["scrapes"]
    rss = [(t, s.get("process_resident_memory_bytes", float("nan")) / 1e6) for t, s in scrapes]
    half = [(t, r) for t, r in rss if t >= rss[-1][0] / 2]
    slope = float(np.polyfit([t for t, _ in half], [r for _, r in half], 1)[0]) * 3600 if len(half) >= 3 else float("nan")
    lag = []
    for (t1, a), (t2, b) in zip(scrapes, scrapes[1:]):
        lag.append((t2, _lag_quantile(a, b, 0.5), _lag_quantile(a, b, 0.99)))
    lag_minutes = []
    for m in range(minutes):
        in_m = [x for x in lag if 60 * m < x[0] <= 60 * (m + 1) + 1e-6]
        lag_minutes.append(max((x[2] for x in in_m), default=float("nan")))
    sent = sum(a for a, _, _ in out["audio"])
    accounted = sum(b for _, b, _ in out["audio"])
    finals = out["finals"]
    all_ms = [1000 * v for _, v in lat]
    last = scrapes[-1][1] if scrapes else {}
    calls = last.get("callstream_partial_refresh_seconds_count", 0.0)
    refresh_s = last.get("callstream_partial_refresh_seconds_sum", 0.0)
    refreshes = {"utterances": int(last.get("callstream_partial_refreshes_total", 0.0)), "calls": int(calls),
                 "mean_call_ms": 1000 * refresh_s / calls if calls else 0.0,
                 "paused_s": last.get("callstream_partial_refresh_paused_seconds_total", 0.0)}
    return {
        "admitted": out["admitted"], "refused": out["refused"], "refused_close_codes": sorted(set(out["refused_close_codes"])),
        "ended": len(out["audio"]), "audio_sent_s": round(sent, 1), "audio_accounted_s": round(accounted, 1),
        "shed": len(out["shed"]), "shed_at_s": [round(t, 1) for t, _, _ in out["shed"]],
        "shed_audio_accounted_s": round(sum(a for _, a, _ in out["shed"]), 1),
        "shed_audio_sent_s": round(sum(b for _, _, b in out["shed"]), 1),
        "end_reasons": sorted({r for _, _, r in out["audio"]}),
        "utterances": len(finals), "finals": sum(finals.values()),
        "utterances_with_other_than_one_final": sum(1 for c in finals.values() if c != 1),
        "final_p50_ms": percentile(all_ms, 50), "final_p99_ms": percentile(all_ms, 99),
        "per_minute": per_minute, "rss_mb": {"start": rss[0][1], "middle": rss[len(rss) // 2][1], "end": rss[-1][1]},
        "rss_mb_series": [(round(t, 1), round(r, 1)) for t, r in rss],
        "rss_growth_mb_per_hour": slope, "loop_lag_p99_ms_per_minute": [1000 * x for x in lag_minutes],
        "loop_lag_p99_ms": 1000 * max((x[2] for x in lag), default=float("nan")),
        "errors": out["errors"][:20], "error_count": len(out["errors"]), "wall_s": out["wall_s"],
        "partial_refreshes": refreshes,
    }


def soak(streams: int, seconds: float, overload_seconds: float, serve_args: Sequence[str] = (), *,
         max_streams: int, burn: float = 0.0) -> tuple[str, dict]:  # fmt: skip
    """The soak at ``streams`` streams for ``seconds``, then 1.5 times ``max_streams``, both against
    ``--max-streams max_streams``, with a neighbour busy on ``burn`` cores."""
    from bench.common import table

    limit = ["--max-streams", str(max_streams)]
    over_n = int(np.ceil(1.5 * max_streams))
    with neighbour(burn):
        held = _summary(_run(streams, seconds, [*limit, *serve_args]), seconds)
        over = _summary(_run(over_n, overload_seconds, [*limit, *serve_args]), overload_seconds)
    rows = [(f"{m['minute']}", m["finals"], m["p50_ms"], m["p99_ms"], lag)
            for m, lag in zip(held["per_minute"], held["loop_lag_p99_ms_per_minute"])]
    text = table(f"Soak: {streams} WebSocket streams of real speech at real time for {seconds:g} s "
                 f"(callstream serve {' '.join([*limit, *serve_args])}, loopback, {FRAME_S * 1000:g} ms frames"
                 + (f", a neighbour busy on {burn:g} cores)" if burn else ")"),
                 ["minute", "finals", "final p50 ms", "final p99 ms", "loop lag p99 ms (bucket)"], rows)
    r = held["rss_mb"]
    text += (f"audio sent {held['audio_sent_s']} s, accounted by the server {held['audio_accounted_s']} s; "
             f"streams ended {held['ended']}/{streams} ({', '.join(held['end_reasons'])}); utterances "
             f"{held['utterances']}, finals {held['finals']}, utterances without exactly one final "
             f"{held['utterances_with_other_than_one_final']}; errors {held['error_count']}\n"
             f"streams shed {held['shed']} (at {', '.join(f'{t:g}' for t in held['shed_at_s']) or '-'} s), "
             f"their audio sent until the shed {held['shed_audio_sent_s']} s, taken by the server (each "
             f"one's end event says how much) {held['shed_audio_accounted_s']} s\n"
             f"server RSS start / middle / end {r['start']:.0f} / {r['middle']:.0f} / {r['end']:.0f} MB, "
             f"growth over the second half {held['rss_growth_mb_per_hour']:.1f} MB/hour\n")
    f = held["partial_refreshes"]
    if f["calls"] or f["paused_s"]:
        text += (f"partials refreshed by the second pass: {f['utterances']} utterances in {f['calls']} calls "
                 f"(mean {f['mean_call_ms']:.0f} ms a call), paused for want of room {f['paused_s']:.0f} s\n")
    text += table(f"Overload: {over_n} streams (1.5x) against --max-streams {max_streams}, {overload_seconds:g} s",
                  ["run", "admitted", "refused", "close codes", "shed", "final p50 ms", "final p99 ms", "errors"],
                  [("soak", held["admitted"], sum(held["refused"].values()), "-", held["shed"], held["final_p50_ms"],
                    held["final_p99_ms"], held["error_count"]),
                   ("1.5x", over["admitted"], ", ".join(f"{k} {v}" for k, v in over["refused"].items()) or "0",
                    " ".join(map(str, over["refused_close_codes"])) or "-", over["shed"], over["final_p50_ms"],
                    over["final_p99_ms"], over["error_count"])])
    return text, {"streams": streams, "max_streams": max_streams, "seconds": seconds, "burn": burn,
                  "soak": held, "overload": over}
