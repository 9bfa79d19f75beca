"""WebSocket transport (``callstream serve``): live captions, one socket per caller or channel.

Protocol (every JSON message has ``type``; see README and ``stream/events.schema.json``):

1. client: ``{"type": "config", ...}`` (``StreamConfig``), first;
2. client: binary frames of audio, any size (whole samples), as configured;
3. client: ``{"type": "finalize"}`` ends the current utterance and keeps the
   stream; ``{"type": "end"}`` flushes everything and closes;
4. server: ``partial``, ``final``, ``enriched``, ``error`` and ``end`` events.

The adapter only decodes, feeds, encodes and sends. The acoustic model and
CTC decoding of all sockets run in the shared ``MicroBatcher``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import http
import os
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from stream import codec
from stream.app import add_decoding_arguments, build_pipeline, decoding_from_args
from stream.batcher import BatcherConfig, MicroBatcher
from stream.errors import InputError, LimitExceeded
from stream.events import EndOfStream, Error, Event, Final, Partial, StreamConfig, StreamEnd
from stream.metrics import Metrics
from stream.pipeline import Pipeline, StreamState

__all__ = ["ServerConfig", "WebSocketServer", "add_arguments", "run"]

# Close codes: 1008 policy (auth, limits, protocol order), 1003 unsupported data.
CLOSE_POLICY = 1008
CLOSE_BAD_DATA = 1003


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port
    token: str | None = None  # bearer token; None: no auth
    certfile: Path | None = None  # TLS when given
    keyfile: Path | None = None
    max_frame_bytes: int = 1 << 20  # per WebSocket message
    max_session_s: float = 4 * 3600.0  # seconds of audio per connection
    max_bytes_per_s: float = 1_000_000.0  # sustained audio rate per connection
    idle_timeout_s: float = 30.0  # no message for this long closes the stream
    ping_interval_s: float = 20.0  # keepalive
    batcher: BatcherConfig = dataclasses.field(default_factory=BatcherConfig)


class _RateLimit:
    """Token bucket over bytes, with a one-second burst."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.stamp = rate, rate, time.monotonic()

    def take(self, n: int) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        return self.tokens >= -self.rate  # allow a burst of one extra second, then refuse


class WebSocketServer:
    def __init__(self, pipeline: Pipeline, config: ServerConfig | None = None, metrics: Metrics | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or ServerConfig()
        self.metrics = metrics or Metrics()
        self.batcher = MicroBatcher(pipeline, self.config.batcher)
        self.batcher.on_batch = self.metrics.observe_batch
        self._server: Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        cfg = self.config
        tls = None
        if cfg.certfile:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(cfg.certfile, cfg.keyfile)
        await self.batcher.start()
        self._server = await serve(
            self._handle, cfg.host, cfg.port, ssl=tls, max_size=cfg.max_frame_bytes,
            ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_interval_s,
            process_request=self._process_request,
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.batcher.close()

    async def serve_forever(self) -> None:
        await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/metrics":
            return Response(http.HTTPStatus.OK, "OK", Headers([("Content-Type", "text/plain; version=0.0.4")]),
                            self.metrics.render())
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if self.config.token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.config.token}".encode()):
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or bad bearer token\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        stream_id = f"ws-{uuid.uuid4().hex[:12]}"
        state = await self._configure(ws, stream_id)
        if state is None:
            return
        self.metrics.active_streams.inc()
        try:
            await self._stream(ws, state)
        finally:
            self.metrics.active_streams.dec()

    async def _configure(self, ws: ServerConnection, stream_id: str) -> StreamState | None:
        try:
            first = await asyncio.wait_for(ws.recv(), self.config.idle_timeout_s)
        except (asyncio.TimeoutError, ConnectionClosed):
            await ws.close(CLOSE_POLICY, "no config message")
            return None
        if isinstance(first, bytes):
            await self._fail(ws, stream_id, "protocol", "the first message must be a JSON config, got binary audio")
            return None
        try:
            config = codec.decode_client(first)
            if not isinstance(config, StreamConfig):
                raise InputError(f"the first message must be a config, got {type(config).__name__}")
            return self.pipeline.open(stream_id, config)
        except InputError as exc:
            await self._fail(ws, stream_id, getattr(exc, "code", "bad_input"), str(exc))
            return None

    async def _stream(self, ws: ServerConnection, state: StreamState) -> None:
        cfg = self.config
        limit = _RateLimit(cfg.max_bytes_per_s)
        first_audio: float | None = None
        first_partial_seen = False
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), cfg.idle_timeout_s)
            except asyncio.TimeoutError:
                await self._send(ws, self.pipeline.finish(state, reason="timeout"))
                await ws.close(1000, "idle timeout")
                return
            except ConnectionClosed:
                self.pipeline.finish(state, reason="disconnected")
                return
            now = time.time()
            try:
                if isinstance(message, bytes):
                    if not limit.take(len(message)):
                        raise LimitExceeded("audio arrives faster than max_bytes_per_s")
                    first_audio = first_audio or now
                    self.pipeline.push(state, message)
                    if state.decoder.samples_decoded / state.format.sample_rate > cfg.max_session_s:
                        raise LimitExceeded(f"session longer than max_session_s={cfg.max_session_s:g}")
                    events = []
                    while ready := self.pipeline.ready_channels(state):
                        events += await self.batcher.run(ready)
                else:
                    control = codec.decode_client(message)
                    if not isinstance(control, StreamEnd):
                        raise InputError(f"unexpected {type(control).__name__} after the config")
                    if control.close:
                        await self._send(ws, self.pipeline.finish(state), received=now)
                        await ws.close(1000, "end of stream")
                        return
                    events = self.pipeline.finalize(state)
            except InputError as exc:
                await self._fail(ws, state.stream_id, getattr(exc, "code", "bad_input"), str(exc), state)
                return
            if not first_partial_seen and first_audio and any(isinstance(e, Partial) for e in events):
                self.metrics.first_partial.observe(now - first_audio)
                first_partial_seen = True
            await self._send(ws, events, received=now)

    async def _send(self, ws: ServerConnection, events: list[Event], received: float | None = None) -> None:
        for event in events:
            if isinstance(event, (Partial, Final)):
                event = dataclasses.replace(event, received_at=received, emitted_at=time.time())
                if isinstance(event, Final) and received is not None:
                    self.metrics.final_latency.observe(event.emitted_at - received)
            try:
                await ws.send(codec.encode(event).decode())
            except ConnectionClosed:
                return

    async def _fail(self, ws: ServerConnection, stream_id: str, code: str, message: str,
                    state: StreamState | None = None) -> None:
        self.metrics.errors.labels(code=code).inc()
        events: list[Event] = [Error(stream_id=stream_id, code=code, message=message)]
        if state is not None:
            state.closed = True
        events.append(EndOfStream(stream_id=stream_id, reason="error"))
        await self._send(ws, events)
        await ws.close(CLOSE_POLICY if code in ("protocol", LimitExceeded.code) else CLOSE_BAD_DATA, message[:120])


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServerConfig()
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--token", default=os.environ.get("CALLSTREAM_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (env CALLSTREAM_TOKEN)")
    p.add_argument("--certfile", type=Path, help="TLS certificate (PEM); enables wss://")
    p.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    p.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes)
    p.add_argument("--max-session-s", type=float, default=d.max_session_s)
    p.add_argument("--max-bytes-per-s", type=float, default=d.max_bytes_per_s)
    p.add_argument("--idle-timeout-s", type=float, default=d.idle_timeout_s)
    p.add_argument("--max-batch", type=int, default=d.batcher.max_batch)
    p.add_argument("--max-wait-ms", type=float, default=d.batcher.max_wait_ms)
    p.add_argument("--model", type=Path, help="ONNX acoustic model (default: bundled int8)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads per call (0: all cores)")
    p.add_argument("--no-enrich", action="store_true", help="skip in-process intent and content filtering")
    add_decoding_arguments(p)


def run(args: argparse.Namespace) -> int:
    config = ServerConfig(
        host=args.host, port=args.port, token=args.token, certfile=args.certfile, keyfile=args.keyfile,
        max_frame_bytes=args.max_frame_bytes, max_session_s=args.max_session_s,
        max_bytes_per_s=args.max_bytes_per_s, idle_timeout_s=args.idle_timeout_s,
        batcher=BatcherConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms),
    )
    pipeline = build_pipeline(model=args.model, threads=args.threads, decoding=decoding_from_args(args),
                              enrich=not args.no_enrich)
    server = WebSocketServer(pipeline, config)
    scheme = "wss" if config.certfile else "ws"
    print(f"callstream serve: {scheme}://{config.host}:{config.port} (metrics at /metrics)", flush=True)
    try:
        asyncio.run(server.serve_forever())
    except KeyboardInterrupt:
        pass
    return 0
