"""WebSocket adapter in-process (server on port 0): protocol, limits, auth, concurrency, metrics."""

import asyncio

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from operators.audio import encode_audio
from stream import codec
from stream.events import EndOfStream, Error, Final, StreamConfig, StreamEnd
from stream.websocket import ServerConfig, WebSocketServer


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import DecodingConfig, build_pipeline

    return build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4))


def _audio(seconds=1.5, rate=16000, seed=0):
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


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
    assert bad_events[0].code == "bad_audio" and "multiple of 2 bytes" in bad_events[0].message
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
