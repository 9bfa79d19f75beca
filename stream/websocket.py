"""WebSocket transport (``callstream serve``): live captions, one socket per caller or channel.

Protocol (every JSON message has ``type``; see README and ``stream/events.schema.json``):

1. client: ``{"type": "config", ...}`` (``StreamConfig``), first;
2. server: ``{"type": "session", ...}`` (``SessionInfo``): the session id and
   the sample frames it holds;
3. client: binary frames of audio, any size (whole samples), as configured;
4. client: ``{"type": "finalize"}`` ends the current utterance and keeps the
   stream; ``{"type": "end"}`` flushes everything and closes;
5. server: ``partial``, ``final``, ``enriched``, ``error`` and ``end`` events.

Plain HTTP ``GET`` requests get the caption page (``stream/static/``),
``/metrics`` and ``/healthz``. A WebSocket handshake from a browser must come
from an allowed ``Origin`` (HTTP 403 otherwise) and, with a token configured,
carry it (HTTP 401 otherwise); ``stream.web`` holds both rules.

Resume: a connection that drops without ``end`` leaves its session held for
``resume_grace_s``. A client that reconnects with ``session_id`` (and
optionally ``resume_offset``, the frame its next audio starts at) continues
the same utterance: audio it resends before the server's offset is skipped,
and finals produced while it was away are sent first. A session that is no
longer held, or a gap in the audio, gets a clear error.

Load and faults: past ``max_streams`` sessions, or while the recogniser does
not keep up with the streams it has (``stream.load``), a new stream gets an
``overloaded`` error and close code 1013 (try again later). When the admitted
streams fall behind together (the machine got slower), the newest are shed
the same way, after their last finals, so that the others keep real time. A
client that does not read its events is cut off once ``max_send_buffer_bytes``
wait for it. On SIGTERM the server stops listening, finalises every open
utterance, sends each client ``end`` with reason ``shutdown`` and exits,
within ``shutdown_grace_s``.

The protocol's rules (config, admission, resume and offsets, rate limits,
the events a dropped connection missed) live in ``stream.session``, without
I/O. This adapter receives, feeds, sends and keeps the timers. The acoustic
model and CTC decoding of all sockets run in the shared ``MicroBatcher``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import http
import os
import signal
import socket
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
from stream.errors import InputError, LimitExceeded, Overloaded
from stream.events import EndOfStream, Error, Event, Final, Partial
from stream.load import LoadConfig, LoadMonitor
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.session import Session, Sessions, parse_config, parse_control
from stream.web import StaticFiles, normalize_origin, origin_allowed, select_subprotocol, token_matches

__all__ = ["ServerConfig", "WebSocketServer", "add_arguments", "run"]

# Close codes: 1008 policy (auth, limits, protocol order, unread events), 1003 unsupported data,
# 1013 try again later (overloaded), 1001 going away (shutdown).
CLOSE_POLICY = 1008
CLOSE_BAD_DATA = 1003
CLOSE_TRY_AGAIN = 1013
CLOSE_GOING_AWAY = 1001
_CLOSE_CODES = {"protocol": CLOSE_POLICY, LimitExceeded.code: CLOSE_POLICY, "slow_reader": CLOSE_POLICY,
                Overloaded.code: CLOSE_TRY_AGAIN, "shutdown": CLOSE_GOING_AWAY}
# The event-loop lag probe sleeps this long between wake-ups (/metrics: callstream_event_loop_lag_seconds).
_LAG_PROBE_S = 0.02
# How often the load monitor samples the recogniser's busy time and the streams' lags.
_LOAD_SAMPLE_S = 0.5


# The default stream limit, measured (docs/reliability.md, `callstream bench --only soak`) on the
# 2-core development machine with the soak's clients on the same cores, with the default second
# pass (Whisper base, beam 4, 6 s of silence after each utterance): 200 streams for 10 minutes
# against 30 admitted 30 and kept every minute's final p99 between 0.40 and 0.58 s, nothing shed;
# 36 against 36 fell behind when all started together, and load shedding took 10. The server's
# work runs on one recogniser thread plus onnxruntime's (--threads 1), so the figure follows a
# core's speed more than the core count: measure a new machine with the bench.
MAX_STREAMS = 30


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port
    token: str | None = None  # bearer token; None: no auth
    # origins (scheme://host[:port]) whose pages may open a WebSocket, besides the server's own
    allow_origins: tuple[str, ...] = ()
    certfile: Path | None = None  # TLS when given
    keyfile: Path | None = None
    max_frame_bytes: int = 1 << 20  # per WebSocket message
    open_timeout_s: float = 10.0  # from TCP accept to the end of the TLS and WebSocket handshakes
    # After the server's close frame, how long it waits for the peer's. A peer that floods messages
    # is not read any more, so its reply is never seen: the connection lingers this long.
    close_timeout_s: float = 10.0
    max_session_s: float = 4 * 3600.0  # seconds of audio per connection
    max_bytes_per_s: float = 1_000_000.0  # sustained audio rate per connection
    idle_timeout_s: float = 30.0  # no message for this long closes the stream
    ping_interval_s: float = 20.0  # keepalive
    resume_grace_s: float = 30.0  # a dropped session is held this long for a resume; 0: never held
    # sessions (streaming or held) at once; a new one past it is refused with 1013; 0: no limit
    max_streams: int = MAX_STREAMS
    # events written but not yet taken by a client, in the server's buffer; past it the client is
    # cut off (1008). The kernel's send buffer of each connection is capped to it too.
    max_send_buffer_bytes: int = 1 << 20
    shutdown_grace_s: float = 10.0  # SIGTERM: time to finish the open streams before cutting them
    load: LoadConfig = dataclasses.field(default_factory=LoadConfig)  # measured admission and shedding
    batcher: BatcherConfig = dataclasses.field(default_factory=BatcherConfig)


@dataclass(eq=False)
class _Link:
    """A session's I/O side: the connection it streams on now, its resume timer, its message lock."""

    session: Session
    conn: ServerConnection | None = None
    expiry: asyncio.TimerHandle | None = None
    first_audio: float | None = None
    first_partial_seen: bool = False
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)  # one message at a time, across a takeover


class WebSocketServer:
    def __init__(self, pipeline: Pipeline, config: ServerConfig | None = None, metrics: Metrics | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or ServerConfig()
        self.metrics = metrics or Metrics()
        self.batcher = MicroBatcher(pipeline, self.config.batcher)
        self.batcher.on_batch = self.metrics.observe_batch
        pipeline.on_refresh = self.metrics.observe_refresh
        self._server: Server | None = None
        cfg = self.config
        self.sessions = Sessions(pipeline.create_stream, max_streams=cfg.max_streams,
                                 max_bytes_per_s=cfg.max_bytes_per_s, max_session_s=cfg.max_session_s,
                                 grace_s=cfg.resume_grace_s)
        self._links: dict[str, _Link] = {}  # by stream id: every session in self.sessions
        self._closing: set[asyncio.Task[object]] = set()  # finish() of dropped sessions, off the loop
        self._connections: set[ServerConnection] = set()  # past the handshake, not yet returned
        self._probe: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._draining = False
        self.load = LoadMonitor(self.config.load)
        self.metrics.sessions.set_function(lambda: len(self.sessions))
        self.metrics.recognizer_busy.set_function(lambda: self.load.busy_share)
        self.metrics.median_lag.set_function(lambda: self.load.median_lag)
        self.static = StaticFiles()

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
        self._probe = asyncio.create_task(self._probe_lag(), name="callstream-lag-probe")
        self._watch = asyncio.create_task(self._watch_load(), name="callstream-load-monitor")
        self._server = await serve(
            self._handle, cfg.host, cfg.port, ssl=tls, max_size=cfg.max_frame_bytes, open_timeout=cfg.open_timeout_s,
            close_timeout=cfg.close_timeout_s,
            ping_interval=cfg.ping_interval_s, ping_timeout=cfg.ping_interval_s,
            # send() waits only past twice the bound, so _send sees the buffer pass the bound first
            write_limit=2 * cfg.max_send_buffer_bytes,
            process_request=self._process_request,
            select_subprotocol=lambda _conn, offered: select_subprotocol(offered),
        )

    async def close(self) -> None:
        """Close at once: held and open sessions are finished without sending their last events."""
        for link in list(self._links.values()):
            self._drop(link)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        for task in (self._probe, self._watch):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.batcher.close()

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Drain, then close: stop listening, end every stream with its last finals and
        ``end`` (reason ``shutdown``), then close; streams not ended within the grace are cut."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.shutdown_grace_s if grace_s is None else grace_s)
        self._draining = True
        if self._server is not None:
            self._server.server.close()  # stops listening; open connections stay until their streams end

        async def settle(tasks: list[asyncio.Task[object]]) -> None:
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
                for task in late:
                    task.cancel()

        await settle([asyncio.create_task(self._end_for_shutdown(link)) for link in list(self._links.values())])
        await settle(list(self._closing))  # the held sessions' finish()
        for ws in list(self._connections):  # past the grace: cut, without a close handshake
            ws.transport.abort()
        await self.close()

    async def _end_for_shutdown(self, link: _Link) -> None:
        if link.conn is None:  # held for a resume that will not come
            self._drop(link)
            return
        async with link.lock:
            if not link.session.ended:
                await self._end(link, reason="shutdown", message="server shutting down", close_code=CLOSE_GOING_AWAY)

    async def _probe_lag(self) -> None:
        """How late the loop wakes from a short sleep: what every stream waits on top of its own work."""
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(_LAG_PROBE_S)
            self.metrics.loop_lag.observe(max(0.0, loop.time() - t0 - _LAG_PROBE_S))

    async def _watch_load(self) -> None:
        """Sample the load; shed the streams the monitor names (stream.load)."""
        while True:
            await asyncio.sleep(_LOAD_SAMPLE_S)
            now, wall = time.monotonic(), time.time()
            lags = {sid: wall - link.first_audio - link.session.frames / link.session.state.format.sample_rate
                    for sid, link in self._links.items()
                    if link.conn is not None and link.first_audio is not None and not link.session.ended
                    and wall - link.first_audio >= self.config.load.window_s}
            self.load.observe(now, self.batcher.busy_s, lags)
            pipeline = self.pipeline
            pipeline.refine_partials = self.load.has_room()
            if pipeline.partial_second_pass is not None and not pipeline.refine_partials:
                self.metrics.refresh_paused.inc(_LOAD_SAMPLE_S)
            for sid in self.load.to_shed(now):
                link = self._links.get(sid)
                if link is not None:
                    task = asyncio.create_task(self._shed(link))
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

    async def _shed(self, link: _Link) -> None:
        """End an admitted stream because the server cannot keep up: its last finals, an
        ``overloaded`` error, ``end`` and close 1013, so the client can go elsewhere or retry."""
        async with link.lock:
            if link.session.ended or link.conn is None:
                return
            self.metrics.shed.inc()
            self.metrics.errors.labels(code=Overloaded.code).inc()
            message = "the server does not keep up with its streams in real time; this stream was shed, try again later"
            events = await self.batcher.call(self.pipeline.finish, link.session.state, Overloaded.code)
            self._forget(link)
            error = Error(stream_id=link.session.stream_id, code=Overloaded.code, message=message)
            await self._send(link, [*events[:-1], error, *events[-1:]])
            ws, link.conn = link.conn, None
            if ws is not None:
                await ws.close(CLOSE_TRY_AGAIN, message[:120])

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Plain GETs: metrics, health, the page. WebSocket handshakes: the origin and token rules."""
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            return _response(self.metrics.render(), "text/plain; version=0.0.4")
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        headers = request.headers
        if "websocket" not in headers.get("Upgrade", "").lower():
            page = self.static.get(request.path)
            if page is None:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
            return _response(page.body, page.content_type, PAGE_HEADERS)
        if not origin_allowed(headers.get("Origin"), headers.get("Host"), self.config.allow_origins):
            self.metrics.refused.labels(reason="origin").inc()
            return connection.respond(http.HTTPStatus.FORBIDDEN, "origin not allowed\n")
        if self.config.token is not None:
            offered = [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",")]
            if not token_matches(self.config.token, authorization=headers.get("Authorization"),
                                 protocols=offered, target=request.path):
                self.metrics.refused.labels(reason="auth").inc()
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or bad token\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            # The kernel would let a client that does not read hold up to 4 MB per connection
            # (tcp_wmem autotuning; Linux doubles the size set here for its bookkeeping). Events
            # are a few kB/s per stream, so the bound costs no throughput.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.max_send_buffer_bytes)
        self._connections.add(ws)
        try:
            link = await self._configure(ws)
            if link is None:
                return
            self.metrics.active_streams.inc()
            try:
                await self._stream(ws, link)
            finally:
                self.metrics.active_streams.dec()
        finally:
            self._connections.discard(ws)

    async def _configure(self, ws: ServerConnection) -> _Link | None:
        stream_id = f"ws-{uuid.uuid4().hex[:12]}"
        try:
            first = await asyncio.wait_for(ws.recv(), self.config.idle_timeout_s)
        except (asyncio.TimeoutError, ConnectionClosed):
            await ws.close(CLOSE_POLICY, "no config message")
            return None
        try:
            config = parse_config(first)
            stream_id = config.session_id or stream_id
            if self._draining:
                await self._fail(ws, stream_id, "shutdown", "the server is shutting down; connect to another")
                return None
            now = time.monotonic()
            session, resumed = self.sessions.open(config, stream_id, now, behind=self.load.behind(now))
        except (InputError, Overloaded) as exc:
            await self._fail(ws, stream_id, getattr(exc, "code", "bad_input"), str(exc))
            return None
        link = self._links.setdefault(session.stream_id, _Link(session))
        if link.expiry is not None:
            link.expiry.cancel()
            link.expiry = None
        old, link.conn = link.conn, ws
        if old is not None:
            await old.close(CLOSE_POLICY, "session resumed on another connection")
        await self._send(link, session.welcome(resumed, self.config.resume_grace_s))
        return link

    def _hold(self, link: _Link) -> None:
        """The connection dropped: keep the session for the grace period, or end it."""
        link.conn = None
        if self.config.resume_grace_s <= 0:
            self._drop(link, reason="disconnected")
            return
        loop = asyncio.get_running_loop()
        link.expiry = loop.call_later(self.config.resume_grace_s, self._drop, link, "disconnected")

    def _forget(self, link: _Link) -> None:
        """The session is over: no resume, no timer."""
        if link.expiry is not None:
            link.expiry.cancel()
        self.sessions.close(link.session)
        if self._links.get(link.session.stream_id) is link:
            del self._links[link.session.stream_id]

    def _drop(self, link: _Link, reason: str = "shutdown") -> None:
        self._forget(link)
        task = asyncio.ensure_future(self.batcher.call(self.pipeline.finish, link.session.state, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _stream(self, ws: ServerConnection, link: _Link) -> None:
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), self.config.idle_timeout_s)
            except asyncio.TimeoutError:
                await self._end(link, reason="timeout", message="idle timeout")
                return
            except ConnectionClosed:
                if link.conn is ws:
                    self._hold(link)
                return
            now = time.time()
            async with link.lock:
                if link.session.ended or link.conn is not ws:
                    return
                if not await self._process(ws, link, message, now):
                    return

    async def _process(self, ws: ServerConnection, link: _Link, message: str | bytes, now: float) -> bool:
        """Handle one client message; False when the stream is over."""
        session = link.session
        state = session.state
        try:
            if isinstance(message, bytes):
                audio = session.audio(message, time.monotonic())
                link.first_audio = link.first_audio or now
                await self.batcher.call(self.pipeline.accept_bytes, state, audio)
                session.fed(audio)
                events = await self.batcher.decode(state)
            else:
                if parse_control(message).close:
                    await self._end(link, received=now)
                    return False
                events = await self.batcher.call(self.pipeline.finalize, state)
        except InputError as exc:
            await self._fail(ws, state.stream_id, getattr(exc, "code", "bad_input"), str(exc), link)
            return False
        if not link.first_partial_seen and link.first_audio and any(isinstance(e, Partial) for e in events):
            self.metrics.first_partial.observe(now - link.first_audio)
            link.first_partial_seen = True
        await self._send(link, events, received=now)
        return True

    async def _end(self, link: _Link, reason: str = "end", message: str = "end of stream",
                   received: float | None = None, close_code: int = 1000) -> None:
        self._forget(link)
        await self._send(link, await self.batcher.call(self.pipeline.finish, link.session.state, reason),
                         received=received)
        ws, link.conn = link.conn, None
        if ws is not None:
            await ws.close(close_code, message)

    async def _send(self, target: _Link | ServerConnection, events: list[Event],
                    received: float | None = None) -> None:
        """Send in order; what a dropped session's connection misses (finals, enriched) waits for its resume."""
        link = target if isinstance(target, _Link) else None
        ws = link.conn if link is not None else target
        for i, event in enumerate(events):
            if isinstance(event, (Partial, Final)):
                event = dataclasses.replace(event, received_at=received, emitted_at=time.time())
                if isinstance(event, Final) and received is not None:
                    self.metrics.final_latency.observe(event.emitted_at - received)
            if ws is not None:
                if link is not None and ws.transport.get_write_buffer_size() > self.config.max_send_buffer_bytes:
                    await self._cut_slow_reader(link, ws)
                    return
                try:
                    await ws.send(codec.encode(event).decode())
                    continue
                except ConnectionClosed:
                    pass
            if link is not None:
                link.session.undelivered(events[i:])
            return

    async def _cut_slow_reader(self, link: _Link, ws: ServerConnection) -> None:
        """The client leaves its events unread: end its stream (not held) and close; an error event
        would only queue behind the unread ones."""
        self.metrics.errors.labels(code="slow_reader").inc()
        link.conn = None
        self._drop(link, reason="error")
        await ws.close(CLOSE_POLICY, f"events not read: over {self.config.max_send_buffer_bytes} bytes wait to be sent")

    async def _fail(self, ws: ServerConnection, stream_id: str, code: str, message: str,
                    link: _Link | None = None) -> None:
        self.metrics.errors.labels(code=code).inc()
        events: list[Event] = [Error(stream_id=stream_id, code=code, message=message)]
        if link is not None:
            link.session.state.closed = True
            self._forget(link)
        events.append(EndOfStream(stream_id=stream_id, reason="error"))
        await self._send(ws, events)
        await ws.close(_CLOSE_CODES.get(code, CLOSE_BAD_DATA), message[:120])


# The page loads only its own files and talks only to its own server.
PAGE_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; connect-src 'self'; object-src 'none'; "
                                "base-uri 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-cache"),
)


def _response(body: bytes, content_type: str, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       ("Connection", "close"), *extra])
    return Response(http.HTTPStatus.OK, "OK", headers, body)


def _origin(value: str) -> str:
    if normalize_origin(value) is None:
        raise argparse.ArgumentTypeError(f"expected an origin such as https://app.example.com, got {value!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ServerConfig()
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--token", default=os.environ.get("CALLSTREAM_TOKEN"),
                   help="require the token: 'Authorization: Bearer TOKEN', subprotocol 'token.TOKEN' or "
                        "'?token=TOKEN' (env CALLSTREAM_TOKEN)")
    p.add_argument("--allow-origin", action="append", default=[], type=_origin, metavar="URL",
                   help="also let pages from this origin (scheme://host[:port]) open WebSockets; repeatable. "
                        "Default: only the server's own page and non-browser clients")
    p.add_argument("--certfile", type=Path, help="TLS certificate (PEM); enables wss://")
    p.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    p.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes)
    p.add_argument("--open-timeout-s", type=float, default=d.open_timeout_s,
                   help="close connections that have not finished the handshake by then")
    p.add_argument("--close-timeout-s", type=float, default=d.close_timeout_s,
                   help="wait this long for a peer's close frame, then drop the connection")
    p.add_argument("--max-session-s", type=float, default=d.max_session_s)
    p.add_argument("--max-bytes-per-s", type=float, default=d.max_bytes_per_s)
    p.add_argument("--idle-timeout-s", type=float, default=d.idle_timeout_s)
    p.add_argument("--resume-grace-s", type=float, default=d.resume_grace_s,
                   help="hold a dropped session this long for a resume (0: never)")
    p.add_argument("--max-streams", type=int, default=d.max_streams,
                   help="sessions at once, held ones included; a new stream past it gets 'overloaded' and "
                        f"close code 1013 (0: no limit; default {d.max_streams}: measured on 2 cores, docs/reliability.md)")
    p.add_argument("--max-lag-s", type=float, default=d.load.max_lag_s,
                   help="when the recogniser is saturated and the median stream is this many seconds behind real "
                        "time and not catching up, shed the newest streams (1013); new streams are refused while "
                        "behind (0: only --max-streams limits)")
    p.add_argument("--max-send-buffer-bytes", type=int, default=d.max_send_buffer_bytes,
                   help="events waiting for a client that does not read them; past it the client is cut off")
    p.add_argument("--shutdown-grace-s", type=float, default=d.shutdown_grace_s,
                   help="on SIGTERM, time to finish the open streams (last finals, 'end') before cutting them")
    p.add_argument("--max-batch", type=int, default=d.batcher.max_batch)
    p.add_argument("--max-wait-ms", type=float, default=d.batcher.max_wait_ms)
    p.add_argument("--model", type=Path, help="ONNX acoustic model (default: bundled int8)")
    p.add_argument("--threads", type=int, default=1,
                   help="onnxruntime threads per call (0: all cores); CTC decoding runs on its own thread, "
                        "so on 2 cores 1 thread served more real-time streams than 2 (make bench)")
    p.add_argument("--no-enrich", action="store_true", help="skip in-process intent and content filtering")
    # Live captions are what this server is for, and the first pass's partials of real speech are
    # often unreadable until the final (README, Partials). The refreshes pause while the recogniser
    # is busy half the time or more (LoadConfig.room), so they take only room the streams leave.
    add_decoding_arguments(p, second_pass_partials=1.0)


def run(args: argparse.Namespace) -> int:
    config = ServerConfig(
        host=args.host, port=args.port, token=args.token, allow_origins=tuple(args.allow_origin),
        certfile=args.certfile, keyfile=args.keyfile, max_frame_bytes=args.max_frame_bytes,
        open_timeout_s=args.open_timeout_s, close_timeout_s=args.close_timeout_s, max_session_s=args.max_session_s,
        max_bytes_per_s=args.max_bytes_per_s, idle_timeout_s=args.idle_timeout_s,
        resume_grace_s=args.resume_grace_s, max_streams=args.max_streams, load=LoadConfig(max_lag_s=args.max_lag_s),
        max_send_buffer_bytes=args.max_send_buffer_bytes, shutdown_grace_s=args.shutdown_grace_s,
        batcher=BatcherConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms),
    )
    pipeline = build_pipeline(model=args.model, threads=args.threads, decoding=decoding_from_args(args),
                              enrich=not args.no_enrich)
    server = WebSocketServer(pipeline, config)
    tls = "s" if config.certfile else ""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        port = server.port
        print(f"callstream serve: ws{tls}://{config.host}:{port}/ (captions page at http{tls}://{config.host}:{port}/, "
              "metrics at /metrics)", flush=True)
        await stop.wait()
        print(f"callstream serve: shutting down: ending {len(server.sessions)} session(s) within "
              f"{config.shutdown_grace_s:g} s", flush=True)
        await server.shutdown()

    asyncio.run(main())
    print("callstream serve: stopped", flush=True)
    return 0
