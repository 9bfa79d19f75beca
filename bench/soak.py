"""Soak: N WebSocket streams of real speech at real-time pace against a ``callstream serve`` child process.

``callstream bench --only soak`` (``--quick``: 10 streams for 30 s). The
server runs as it does in production, a process of its own on loopback; the
clients run in another process, as they would on other machines. Each client
loops over real speech (dev utterances with 1.2 s pauses, or the bundled
sample call where the dev data is absent) in 20 ms PCM16 frames, sent on a
real-time clock, and ends its stream at the end. The report:

* audio: seconds sent against the seconds the server accounted in each
  stream's ``end`` event (nothing dropped: equal);
* finals per utterance id (exactly one each) and errors of any kind;
* final latency (arrival minus the send time of the audio that ended the
  utterance, ``end`` of the final) p50 / p99 per minute;
* the server's resident memory at start, middle and end, and its growth per
  hour, from ``/metrics`` (``process_resident_memory_bytes``);
* the server's event-loop lag from its probe (``callstream_event_loop_lag_seconds``).

Then an overload run at 1.5 times the streams: the server's ``--max-streams``
is set to the soak's stream count, the admitted streams keep their latency
and the rest get ``overloaded`` (close 1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=5)
        proc.stdout.close()
