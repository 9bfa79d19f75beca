"""WebSocket adapter in-process (server on port 0): protocol, limits, auth, concurrency, metrics."""

import asyncio
import dataclasses

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from operators.audio import encode_audio
from stream import codec
from stream.events import EndOfStream, Error, Final, SessionInfo, StreamConfig, StreamEnd
from stream.websocket import ServerConfig, WebSocketServer


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import DecodingConfig, build_pipeline

    return build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4))


def _audio(seconds=1.5, rate=16000, seed=0):
    """Noise with a syllable-like 3 Hz envelope: never quiet for long, so only the tiny model ends utterances."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.05 + 0.95 * np.abs(np.sin(2 * np.pi * 3 * t))
    return (0.2 * envelope * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


async def _with_server(pipeline, body, **cfg):
    server = WebSocketServer(pipeline, ServerConfig(port=0, **cfg))
    await server.start()
    try:
        return await body(f"ws://127.0.0.1:{server.port}", server)
    finally:
        await server.close()


async def _drain(ws):
    """Every message until the server closes (with any close code)."""
    events = []
    try:
        async for message in ws:
            events.append(codec.decode(message))
    except ConnectionClosed:
        pass
    return events


async def _session(url, config, audio, frame_s=0.02, headers=None):
    events = []
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(codec.encode_client(config).decode())
        step = int(config.sample_rate * frame_s)
        for i in range(0, len(audio), step):
            await ws.send(encode_audio(audio[i : i + step], config.encoding))
        await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
        events += await _drain(ws)
        return events, ws.close_code


def test_stream_end_to_end_and_concurrent_clients_are_independent(pipeline):
    cfg = StreamConfig(sample_rate=16000, encoding="pcm16", endpoint_silence_s=0.2)

    async def body(url, server):
        solo = await _session(url, cfg, _audio(seed=1))
        many = await asyncio.gather(*[_session(url, cfg, _audio(seed=s)) for s in (1, 2, 3)])
        return solo, many

    (solo_events, code), many = asyncio.run(_with_server(pipeline, body))
    assert code == 1000 and isinstance(solo_events[-1], EndOfStream)
    finals = lambda evs: [(e.text, e.start, e.end) for e in evs if isinstance(e, Final)]  # noqa: E731
    # The same audio gives the same finals alone or beside other streams.
    assert finals(many[0][0]) == finals(solo_events)
    assert all(isinstance(evs[-1], EndOfStream) for evs, _ in many)


@pytest.mark.parametrize(
    "first,code,match",
    [
        (b"\x00\x01", "protocol", "first message must be a JSON config"),
        ('{"type": "config", "sampleRate": 8000}', "bad_message", "unknown field"),
        ('{"type": "config", "encoding": "opus"}', "bad_audio_format", "unknown encoding 'opus'"),
        ("not json", "bad_message", "not valid JSON"),
    ],
)
def test_bad_openings_get_an_error_event_and_a_close(pipeline, first, code, match):
    async def body(url, server):
        async with connect(url) as ws:
            await ws.send(first)
            return await _drain(ws), ws.close_code

    events, close_code = asyncio.run(_with_server(pipeline, body))
    assert isinstance(events[0], Error) and events[0].code == code and match in events[0].message
    assert close_code in (1003, 1008)


def test_odd_pcm16_frame_errors_that_stream_only(pipeline):
    cfg = StreamConfig(sample_rate=16000)

    async def body(url, server):
        async with connect(url) as bad:
            await bad.send(codec.encode_client(cfg).decode())
            await bad.send(b"\x00\x01\x02")
            bad_events = await _drain(bad)
        good, _ = await _session(url, cfg, _audio(0.5))
        return bad_events, good

    bad_events, good = asyncio.run(_with_server(pipeline, body))
    assert isinstance(bad_events[0], SessionInfo) and bad_events[0].offset == 0 and not bad_events[0].resumed
    assert bad_events[1].code == "bad_audio" and "multiple of 2 bytes" in bad_events[1].message
    assert isinstance(good[-1], EndOfStream) and good[-1].reason == "end"


def test_oversized_frame_closes_with_1009(pipeline):
    async def body(url, server):
        async with connect(url) as ws:
            await ws.send(codec.encode_client(StreamConfig()).decode())
            await ws.send(b"\x00" * 4096)
            await _drain(ws)
            return ws.close_code

    assert asyncio.run(_with_server(pipeline, body, max_frame_bytes=1024)) == 1009


def test_bearer_token_is_required_when_configured(pipeline):
    async def body(url, server):
        with pytest.raises(InvalidStatus) as bad:
            async with connect(url, additional_headers={"Authorization": "Bearer wrong"}):
                pass
        ok, code = await _session(url, StreamConfig(), _audio(0.3), headers={"Authorization": "Bearer s3cret"})
        return bad.value.response.status_code, ok, code

    status, events, code = asyncio.run(_with_server(pipeline, body, token="s3cret"))
    assert status == 401 and code == 1000 and isinstance(events[-1], EndOfStream)


async def _status(url, **kwargs):
    """The handshake's HTTP status, and the subprotocol the server chose (101 only)."""
    try:
        async with connect(url, **kwargs) as ws:
            return 101, ws.subprotocol
    except InvalidStatus as exc:
        return exc.response.status_code, None


def test_browser_token_carriers_and_origin_rule(pipeline):
    """A browser sends the token as subprotocol ``token.X`` or ``?token=X``, and always an Origin."""

    async def body(url, server):
        own = f"http://127.0.0.1:{server.port}"
        return {
            "subprotocol": await _status(url, subprotocols=["callstream", "token.s3cret"], origin=own),
            "query": await _status(f"{url}/?token=s3cret", subprotocols=["callstream"], origin=own),
            "no protocol offered": await _status(f"{url}/?token=s3cret"),
            "wrong subprotocol token": await _status(url, subprotocols=["callstream", "token.nope"], origin=own),
            "wrong query token": await _status(f"{url}/?token=nope", origin=own),
            "none": await _status(url, origin=own),
            "foreign origin, right token": await _status(url, subprotocols=["callstream", "token.s3cret"],
                                                         origin="http://evil.test"),
            "other port": await _status(url, additional_headers={"Authorization": "Bearer s3cret"},
                                        origin=f"http://127.0.0.1:{server.port + 1}"),
            "allowed origin": await _status(url, additional_headers={"Authorization": "Bearer s3cret"},
                                            origin="https://app.example.com"),
            "metrics": server.metrics.render().decode(),
        }

    got = asyncio.run(_with_server(pipeline, body, token="s3cret", allow_origins=("https://app.example.com",)))
    metrics = got.pop("metrics")
    assert got == {
        "subprotocol": (101, "callstream"),
        "query": (101, "callstream"),
        "no protocol offered": (101, None),
        "wrong subprotocol token": (401, None),
        "wrong query token": (401, None),
        "none": (401, None),
        "foreign origin, right token": (403, None),
        "other port": (403, None),
        "allowed origin": (101, None),
    }
    assert 'callstream_refused_handshakes_total{reason="origin"} 2.0' in metrics
    assert 'callstream_refused_handshakes_total{reason="auth"} 3.0' in metrics


async def _http_get(port, target):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_plain_get_serves_the_caption_page_without_a_token(pipeline):
    from stream.web import STATIC_DIR

    async def body(url, server):
        targets = ["/", "/?token=x", "/app.js", "/pcm-worklet.js", "/style.css", "/../pyproject.toml",
                   "/%2e%2e/websocket.py", "/static/app.js", "/healthz"]
        return {t: await _http_get(server.port, t) for t in targets}

    got = asyncio.run(_with_server(pipeline, body, token="s3cret"))
    status, headers, page = got["/"]
    assert status == 200 and page == (STATIC_DIR / "index.html").read_bytes()
    assert headers["Content-Type"] == "text/html; charset=utf-8" and headers["Content-Length"] == str(len(page))
    assert "default-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    assert got["/?token=x"][2] == page
    for script in ("/app.js", "/pcm-worklet.js"):
        assert got[script][0] == 200 and got[script][1]["Content-Type"] == "text/javascript; charset=utf-8"
    assert got["/style.css"][1]["Content-Type"] == "text/css; charset=utf-8"
    assert [got[t][0] for t in ("/../pyproject.toml", "/%2e%2e/websocket.py", "/static/app.js")] == [404] * 3
    assert got["/healthz"][:3:2] == (200, b"ok\n")


def test_metrics_endpoint_reports_streams_and_batches(pipeline):
    async def body(url, server):
        await _session(url, StreamConfig(), _audio(1.0))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await reader.read(1 << 16)
        writer.close()
        return data.decode()

    text = asyncio.run(_with_server(pipeline, body))
    assert "callstream_active_streams" in text
    assert "callstream_acoustic_batch_size_count" in text
    chunks = [line for line in text.splitlines() if line.startswith("callstream_chunks_processed_total")]
    assert chunks and float(chunks[0].split()[-1]) > 0


async def _send_audio(ws, audio, config, start=0, finalize_at=(), frame_s=0.02):
    """Send ``audio[start:]`` in 20 ms frames, with a finalize before each sample index in ``finalize_at``."""
    step = int(config.sample_rate * frame_s)
    for i in range(start, len(audio), step):
        if i in finalize_at:
            await ws.send(codec.encode_client(StreamEnd(close=False)).decode())
        await ws.send(encode_audio(audio[i : i + step], config.encoding))


async def _received_within(ws, seconds):
    events = []
    try:
        while True:
            events.append(codec.decode(await asyncio.wait_for(ws.recv(), seconds)))
    except asyncio.TimeoutError:
        return events


async def _drop(ws):
    """Cut the connection the way a network failure does (no close handshake)."""
    ws.transport.abort()
    await asyncio.sleep(0.05)


def _finals(events):
    return [(e.text, e.start, e.end, e.utterance_id) for e in events if isinstance(e, Final)]


@pytest.mark.parametrize("overlap_s", [0.0, 0.3, None])
def test_resume_continues_the_same_utterances(pipeline, overlap_s):
    """Drop mid-stream, reconnect with the session id: the finals equal an unbroken stream's.

    ``overlap_s`` is how much already-sent audio the client resends (skipped by
    the server); None resumes at the server's offset from the session event.
    """
    cfg = StreamConfig(sample_rate=16000, encoding="pcm16", endpoint_silence_s=0.2, session_id="call-42.agent")
    audio = _audio(3.0, seed=7)
    cut, marks = int(1.3 * 16000), (int(0.8 * 16000), int(2.2 * 16000))  # utterance 2 spans the cut

    async def body(url, server):
        async with connect(url) as ws:
            await ws.send(codec.encode_client(dataclasses.replace(cfg, session_id="whole")).decode())
            await _send_audio(ws, audio, cfg, finalize_at=marks)
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
            whole = await _drain(ws)
        async with connect(url) as ws:
            await ws.send(codec.encode_client(cfg).decode())
            await _send_audio(ws, audio[:cut], cfg, finalize_at=marks)
            before = await _received_within(ws, 0.3)
            await _drop(ws)
        start = None if overlap_s is None else cut - int(overlap_s * 16000)
        async with connect(url) as ws:
            await ws.send(codec.encode_client(dataclasses.replace(cfg, resume_offset=start)).decode())
            info = codec.decode(await ws.recv())
            await _send_audio(ws, audio, cfg, start=info.offset if start is None else start, finalize_at=marks)
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
            events = await _drain(ws)
        return whole, before, info, events

    whole, before, info, events = asyncio.run(_with_server(pipeline, body))
    assert isinstance(info, SessionInfo) and info.resumed and info.session_id == "call-42.agent"
    assert info.offset == cut and info.grace_s > 0
    strip = lambda finals: [(t, s, e) for t, s, e, _ in finals]  # noqa: E731
    assert len(_finals(whole)) == 3
    # Nothing lost, nothing twice: finals before the drop + after the resume = the unbroken stream's.
    assert strip(_finals(before) + _finals(events)) == strip(_finals(whole))
    assert isinstance(events[-1], EndOfStream) and events[-1].audio_seconds == pytest.approx(3.0, abs=0.01)


def test_resume_errors_are_clear_and_keep_a_held_session(pipeline):
    cfg = StreamConfig(sample_rate=16000, session_id="s1")

    async def opening(url, config):
        async with connect(url) as ws:
            await ws.send(codec.encode_client(config).decode())
            return await _drain(ws)

    async def body(url, server):
        unknown = await opening(url, dataclasses.replace(cfg, session_id="nope", resume_offset=800))
        async with connect(url) as ws:
            await ws.send(codec.encode_client(cfg).decode())
            await ws.recv()
            await _send_audio(ws, _audio(0.5), cfg)
            await asyncio.sleep(0.2)
            await _drop(ws)
        gap = await opening(url, dataclasses.replace(cfg, resume_offset=9000))
        fmt = await opening(url, dataclasses.replace(cfg, encoding="mulaw", resume_offset=0))
        bad_id = await opening(url, dataclasses.replace(cfg, session_id="no spaces"))
        async with connect(url) as ws:  # still held after the failed attempts
            await ws.send(codec.encode_client(dataclasses.replace(cfg, resume_offset=8000)).decode())
            info = codec.decode(await ws.recv())
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
            rest = await _drain(ws)
        return unknown, gap, fmt, bad_id, info, rest

    unknown, gap, fmt, bad_id, info, rest = asyncio.run(_with_server(pipeline, body))
    assert unknown[0].code == "session_expired" and "not held" in unknown[0].message
    assert gap[0].code == "resume_gap" and "resend from frame 8000" in gap[0].message
    assert fmt[0].code == "resume_mismatch"
    assert bad_id[0].code == "bad_input" and "session_id" in bad_id[0].message
    assert info.resumed and info.offset == 8000
    assert isinstance(rest[-1], EndOfStream) and rest[-1].audio_seconds == pytest.approx(0.5)


def test_a_dropped_session_expires_after_its_grace_period(pipeline):
    cfg = StreamConfig(sample_rate=16000, session_id="short")

    async def body(url, server):
        async with connect(url) as ws:
            await ws.send(codec.encode_client(cfg).decode())
            await ws.recv()
            await _send_audio(ws, _audio(0.3), cfg)
            await _drop(ws)
        held = "short" in server._links
        await asyncio.sleep(0.4)
        async with connect(url) as ws:
            await ws.send(codec.encode_client(dataclasses.replace(cfg, resume_offset=4800)).decode())
            return held, await _drain(ws)

    held, events = asyncio.run(_with_server(pipeline, body, resume_grace_s=0.2))
    assert held and events[0].code == "session_expired"


def test_bundled_sample_call_end_to_end_with_enrichment(tiny_onnx):
    """The bundled stereo call in 20 ms frames: partials, then finals with timed words, then enriched events.

    Utterances are cut by the client's ``finalize`` every 2 s (the tiny random
    model here never predicts the silence the endpoint rules wait for). Two
    clients at once get the same events as one alone.
    """
    import soundfile as sf

    from models.runtime import ASSETS
    from operators.intent import default_encoder_dir
    from stream.app import DecodingConfig, build_pipeline
    from stream.events import Enriched, Partial

    if not (default_encoder_dir() / "encoder.onnx").exists():
        pytest.skip("the sentence encoder is not built (make setup builds it)")
    pipeline = build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4), enrich=True)
    audio, rate = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    audio = audio[: 8 * rate]
    cfg = StreamConfig(sample_rate=rate, encoding="mulaw", channels=2)
    step = int(rate * 0.02)

    async def client(url):
        async with connect(url) as ws:
            await ws.send(codec.encode_client(cfg).decode())
            for i in range(0, len(audio), step):
                if i and i % (2 * rate) == 0:
                    await ws.send(codec.encode_client(StreamEnd(close=False)).decode())
                await ws.send(encode_audio(audio[i : i + step], "mulaw"))
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
            return await _drain(ws), ws.close_code

    async def body(url, server):
        alone = await client(url)
        together = await asyncio.gather(client(url), client(url))
        return alone, together

    (events, code), together = asyncio.run(_with_server(pipeline, body))
    assert code == 1000 and isinstance(events[0], SessionInfo) and isinstance(events[-1], EndOfStream)
    finals = [e for e in events if isinstance(e, Final)]
    assert {f.channel for f in finals} == {"agent", "customer"} and len(finals) >= 8
    for f in finals:
        i = events.index(f)
        assert any(isinstance(e, Partial) and e.utterance_id == f.utterance_id for e in events[:i])
        assert isinstance(events[i + 1], Enriched) and events[i + 1].transcript.utterance_id == f.utterance_id
        assert f.words and [w.text for w in f.words] == f.text.split()
        assert all(f.start <= w.start <= w.end <= f.end + 1e-6 for w in f.words)
    strip = lambda evs: [(e.channel, e.text, e.start, e.end) for e in evs if isinstance(e, Final)]  # noqa: E731
    for evs, close in together:
        assert close == 1000 and strip(evs) == strip(events)
