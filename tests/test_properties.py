"""Properties of the streaming protocol on real speech with the bundled recogniser (hypothesis).

(a) The finals do not depend on how the audio is cut into messages; a message of a partial
    sample is refused (the protocol takes whole samples only) and leaves the stream as it was.
(b) A connection dropped anywhere and resumed from any offset the server holds gives the finals
    of an unbroken stream, through the WebSocket server.
"""

import asyncio
import dataclasses
import uuid

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from models.runtime import ASSETS
from operators.audio import encode_audio
from stream import codec
from stream.errors import DecodeError
from stream.events import Final, SessionInfo, StreamConfig, StreamEnd
from stream.websocket import ServerConfig, WebSocketServer
from tests.test_websocket import _drain, _drop, _received_within
from tests.recognizer import feed

RATE = 16000
# Each example streams 14 s of audio through the whole recogniser (about 1 s of compute), so a
# failure is reported as found, without shrinking.
PROPERTY = settings(max_examples=6, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def pipeline():
    from stream.app import build_pipeline

    return build_pipeline()


class Clip(bytes):
    """PCM16 bytes whose repr is short: hypothesis prints the arguments of a failing example."""

    def __repr__(self) -> str:
        return f"<{len(self) // 2} samples of PCM16>"


@pytest.fixture(scope="module")
def speech() -> Clip:
    """The agent's first 14 s of the bundled call (two utterances, 4.7 s of silence between), PCM16 at 16 kHz."""
    x, rate = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    return Clip(encode_audio(soxr.resample(x[: 14 * rate, 0], rate, RATE), "pcm16"))


def _finals(events) -> list[Final]:
    """The finals, without what names the stream or stamps the wall clock."""
    return [dataclasses.replace(e, stream_id="", utterance_id=e.utterance_id.split("/", 1)[1], received_at=None,
                                emitted_at=None) for e in events if isinstance(e, Final)]


def _stream(pipeline, audio: bytes, sizes: list[int], odd_at: int | None = None) -> list[Final]:
    """The finals of ``audio`` sent in messages of ``sizes`` samples (cycled); before message
    ``odd_at``, a message of an odd byte count is tried (where the audio left holds one: the last
    message may be cut short by the audio's end, to an even count)."""
    state = pipeline.create_stream("s", StreamConfig(sample_rate=RATE))
    events, pos, i = [], 0, 0
    while pos < len(audio):
        n = 2 * sizes[i % len(sizes)]
        if i == odd_at and pos + n + 1 <= len(audio):
            with pytest.raises(DecodeError, match="multiple of 2 bytes"):
                feed(pipeline, state, audio[pos : pos + n + 1])
        events += feed(pipeline, state, audio[pos : pos + n])
        pos, i = pos + n, i + 1
    return _finals(events + pipeline.finish(state))


@pytest.fixture(scope="module")
def reference(pipeline, speech) -> list[Final]:
    finals = _stream(pipeline, speech, [320])
    assert [f.text for f in finals] == [
        "thank you for calling acne thank my name is sarah how can i help you today",
        "i am sorry to hear that can you read me the card number please",
    ]
    return finals


@PROPERTY
@given(sizes=st.lists(st.integers(0, 2 * RATE), min_size=1, max_size=30).filter(any),
       odd_at=st.none() | st.integers(0, 60))
@example(sizes=[810, 6412, 10863, 12035, 1422], odd_at=36)  # the odd message would be the last, cut short
def test_finals_do_not_depend_on_how_the_audio_is_cut(pipeline, speech, reference, sizes, odd_at):
    assert _stream(pipeline, speech, sizes, odd_at) == reference


async def _send(ws, audio: bytes, start: int, stop: int, frame: int = 320) -> None:
    for i in range(start, stop, frame):
        await ws.send(audio[2 * i : 2 * min(i + frame, stop)])


async def _settled(server: WebSocketServer, session_id: str, frames: int) -> None:
    """Wait until the server has taken ``frames`` frames of the session and sent what they gave."""
    while True:
        link = server._links.get(session_id)
        if link is not None and link.session.frames == frames and not link.lock.locked():
            return
        await asyncio.sleep(0.02)


@PROPERTY
@given(cut_s=st.floats(0.05, 13.95), back_s=st.none() | st.floats(0.0, 1.0))
def test_a_resume_from_any_offset_gives_the_finals_of_an_unbroken_stream(pipeline, speech, reference, cut_s,
                                                                        back_s):
    """Drop after ``cut_s`` s and resume ``back_s`` s before it (None: from the server's offset)."""
    total = len(speech) // 2
    cut = round(cut_s * RATE)
    config = StreamConfig(sample_rate=RATE, session_id=f"prop-{uuid.uuid4().hex[:8]}")

    async def body(url, server):
        async with connect(url) as ws:
            await ws.send(codec.encode_client(config).decode())
            await _send(ws, speech, 0, cut)
            await asyncio.wait_for(_settled(server, config.session_id, cut), 30)
            before = await _received_within(ws, 0.2)
            await _drop(ws)
        start = None if back_s is None else max(0, cut - round(back_s * RATE))
        async with connect(url) as ws:
            await ws.send(codec.encode_client(dataclasses.replace(config, resume_offset=start)).decode())
            info = codec.decode(await ws.recv())
            await _send(ws, speech, info.offset if start is None else start, total)
            await ws.send(codec.encode_client(StreamEnd(close=True)).decode())
            after = await _drain(ws)
        return before, info, after

    async def run():
        server = WebSocketServer(pipeline, ServerConfig(port=0))
        await server.start()
        try:
            return await body(f"ws://127.0.0.1:{server.port}", server)
        finally:
            await server.close()

    before, info, after = asyncio.run(run())
    assert isinstance(info, SessionInfo) and info.resumed and info.offset == cut
    assert _finals(before) + _finals(after) == reference
    np.testing.assert_allclose(after[-1].audio_seconds, total / RATE, atol=1e-3)
