"""The WebSocket server against hostile peers (server on port 0): slow handshakes, config floods,
token guessing, TLS. Oversized frames and a wrong token's 401 are in test_websocket.py."""

import asyncio
import hmac
import json
import shutil
import ssl
import subprocess
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from stream import codec
from stream.events import EndOfStream, Error, SessionInfo, StreamConfig, StreamEnd
from tests.test_websocket import _audio, _drain, _session, _with_server


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import DecodingConfig, build_pipeline

    return build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4))


async def _closed_after(reader: asyncio.StreamReader, limit_s: float) -> float:
    """Seconds until the server closes the connection (EOF); fails past ``limit_s``."""
    start = time.monotonic()
    while await asyncio.wait_for(reader.read(4096), limit_s):
        pass
    return time.monotonic() - start


def test_slowloris_connections_are_closed_after_the_open_timeout_and_others_are_served(pipeline):
    async def body(url, server):
        silent = await asyncio.open_connection("127.0.0.1", server.port)
        partial = await asyncio.open_connection("127.0.0.1", server.port)
        # A handshake that never ends: headers trickle in, the blank line never comes.
        partial[1].write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        await partial[1].drain()
        served = await _session(url, StreamConfig(), _audio(0.3))
        waits = await asyncio.gather(_closed_after(silent[0], 5.0), _closed_after(partial[0], 5.0))
        for _, writer in (silent, partial):
            writer.close()
        return served, waits

    (events, code), waits = asyncio.run(_with_server(pipeline, body, open_timeout_s=0.5))
    assert code == 1000 and isinstance(events[-1], EndOfStream) and events[-1].reason == "end"
    assert all(w < 2.0 for w in waits), waits


def test_config_floods_close_that_stream_only(pipeline):
    """A thousand configs, or one of 30,000 hotwords: an error and a close, quickly; others are served."""
    config = codec.encode_client(StreamConfig()).decode()
    hotwords = json.dumps({"type": "config", "hotwords": [[f"word {i}", 5.0] for i in range(30000)]})

    async def opening(url, *messages):
        """The server's answer until its close frame, and the close code; then the client drops the
        connection. A flooding peer's close reply sits behind the messages the server no longer
        reads, so the server waits ``close_timeout_s`` for it."""
        async with connect(url, max_size=None) as ws:
            start = time.monotonic()
            for message in messages:
                await ws.send(message)
            events = [codec.decode(await ws.recv())]
            while not isinstance(events[-1], EndOfStream):
                events.append(codec.decode(await ws.recv()))
            while ws.protocol.close_rcvd is None:
                await asyncio.sleep(0.01)
            ws.transport.abort()
            return events, ws.protocol.close_rcvd.code, time.monotonic() - start

    async def body(url, server):
        return await asyncio.gather(opening(url, *[config] * 1000), opening(url, hotwords),
                                    _session(url, StreamConfig(), _audio(0.5)))

    start = time.monotonic()
    (flooded, flood_code, _), (refused, big_code, big_s), (served, served_code) = asyncio.run(
        _with_server(pipeline, body, close_timeout_s=0.5))
    assert time.monotonic() - start < 5.0  # the server shut down without waiting 10 s for the flooder
    assert isinstance(flooded[0], SessionInfo) and flood_code == 1003
    assert isinstance(flooded[1], Error) and "unexpected StreamConfig after the config" in flooded[1].message
    assert isinstance(refused[0], Error) and refused[0].code == "bad_config" and big_code == 1003
    assert "at most 100 hotwords" in refused[0].message and big_s < 3.0
    assert served_code == 1000 and isinstance(served[-1], EndOfStream) and served[-1].reason == "end"


def test_tokens_are_compared_in_constant_time_and_near_misses_are_refused(pipeline, monkeypatch):
    compared, original = [], hmac.compare_digest

    def compare_digest(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr("stream.web.hmac.compare_digest", compare_digest)

    async def body(url, server):
        statuses = []
        for header in ["Bearer s3cre", "Bearer s3cret2", "bearer s3cret", "Bearer  s3cret", "s3cret", "",
                       "Bearer s3cr\u00e9t"]:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers={"Authorization": header} if header else None):
                    pass
            statuses.append(refused.value.response.status_code)
        return statuses, await _session(url, StreamConfig(), _audio(0.3), headers={"Authorization": "Bearer s3cret"})

    statuses, (events, code) = asyncio.run(_with_server(pipeline, body, token="s3cret"))
    assert statuses == [401] * 7 and code == 1000 and isinstance(events[-1], EndOfStream)
    # Every bearer candidate (five of the eight requests carry one) went through compare_digest.
    assert [a for a, _ in compared] == [b"s3cre", b"s3cret2", b" s3cret", "s3cr\u00e9t".encode(), b"s3cret"]
    assert all(b == b"s3cret" for _, b in compared)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


def test_wss_end_to_end_with_a_self_signed_certificate(pipeline, certificate):
    cert, key = certificate
    trusted = ssl.create_default_context(cafile=cert)

    async def stream(url, tls):
        async with connect(url, ssl=tls) as ws:
            await ws.send(codec.encode_client(StreamConfig()).decode())
            await ws.send(b"\x00\x00" * 8000)
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
            return await _drain(ws), ws.close_code

    async def body(url, server):
        wss = url.replace("ws://", "wss://")
        with pytest.raises(ssl.SSLCertVerificationError):
            await stream(wss, ssl.create_default_context())  # the system's CAs do not know it
        with pytest.raises(InvalidMessage):
            await stream(url, None)  # plain ws:// to a TLS port: no HTTP answer
        return await stream(wss, trusted)

    events, code = asyncio.run(_with_server(pipeline, body, certfile=cert, keyfile=key))
    assert code == 1000 and isinstance(events[0], SessionInfo) and isinstance(events[-1], EndOfStream)
    assert events[-1].audio_seconds == pytest.approx(0.5)
