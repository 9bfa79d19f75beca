"""The WebSocket session protocol without sockets: config, admission, resume and offsets, rate
limits and the events a dropped connection missed (``stream/session.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from operators.audio import encode_audio
from stream.errors import InputError, LimitExceeded, Overloaded, ProtocolError, ResumeError
from stream.events import Enriched, Final, Partial, SessionInfo, StreamConfig
from stream.session import Sessions, parse_config, parse_control
from tests.test_websocket import pipeline  # noqa: F401 (a fixture)

PCM = StreamConfig(sample_rate=8000, encoding="pcm16")


def _sessions(pipeline, **limits) -> Sessions:
    settings = {"max_streams": 0, "max_bytes_per_s": 1e9, "max_session_s": 3600.0, "grace_s": 30.0} | limits
    return Sessions(pipeline.create_stream, **settings)


def _pcm(frames: int) -> bytes:
    return encode_audio(np.zeros(frames, np.float32), "pcm16")


def test_the_first_message_must_be_a_config():
    with pytest.raises(ProtocolError) as err:
        parse_config(b"\x00\x01")
    assert err.value.code == "protocol"
    with pytest.raises(InputError, match="must be a config"):
        parse_config('{"type": "finalize"}')
    assert parse_config('{"type": "config", "sample_rate": 8000}').sample_rate == 8000
    assert parse_control('{"type": "end"}').close and not parse_control('{"type": "finalize"}').close
    with pytest.raises(InputError, match="after the config"):
        parse_control('{"type": "config"}')


def test_admission_counts_held_sessions(pipeline):
    sessions = _sessions(pipeline, max_streams=2)
    first, resumed = sessions.open(PCM, "a", now=0.0)
    assert not resumed and len(sessions) == 1
    sessions.open(PCM, "b", now=0.0)
    with pytest.raises(Overloaded):
        sessions.open(PCM, "c", now=0.0)
    # "a"'s client comes back to its held session: it is owed the room
    again, resumed = sessions.open(StreamConfig(sample_rate=8000, encoding="pcm16", session_id="a"), "a", now=1.0)
    assert resumed and again is first
    sessions.close(first)
    assert first.ended and len(sessions) == 1
    sessions.open(PCM, "c", now=2.0)


def test_a_server_that_does_not_keep_up_takes_no_new_streams_but_resumes_held_ones(pipeline):
    sessions = _sessions(pipeline)
    first, _ = sessions.open(StreamConfig(sample_rate=8000, encoding="pcm16", session_id="a"), "a", now=0.0)
    with pytest.raises(Overloaded, match="does not keep up"):
        sessions.open(PCM, "b", now=1.0, behind=True)
    again, resumed = sessions.open(StreamConfig(sample_rate=8000, encoding="pcm16", session_id="a"), "a",
                                   now=1.0, behind=True)
    assert resumed and again is first and len(sessions) == 1


def test_a_resume_skips_the_frames_the_client_sends_again(pipeline):
    sessions = _sessions(pipeline)
    session, _ = sessions.open(PCM, "s", now=0.0)
    for _ in range(3):
        audio = session.audio(_pcm(800), now=0.0)
        pipeline.accept_bytes(session.state, audio)
        session.fed(audio)
    assert session.frames == 2400
    config = StreamConfig(sample_rate=8000, encoding="pcm16", session_id="s", resume_offset=2000)
    same, resumed = sessions.open(config, "s", now=1.0)
    assert resumed and same is session and session.skip == 400
    assert len(session.audio(_pcm(300), now=1.0)) == 0  # all 300 frames were sent before
    assert len(session.audio(_pcm(300), now=1.0)) == 2 * 200  # 100 more skipped, 200 new
    assert session.skip == 0


@pytest.mark.parametrize(("config", "code"), [
    (StreamConfig(sample_rate=8000, encoding="pcm16", session_id="s", resume_offset=5000), "resume_gap"),
    (StreamConfig(sample_rate=16000, encoding="pcm16", session_id="s"), "resume_mismatch"),
    (StreamConfig(sample_rate=8000, encoding="pcm16", session_id="gone", resume_offset=10), "session_expired"),
])
def test_a_resume_that_cannot_continue_says_why(pipeline, config, code):
    sessions = _sessions(pipeline)
    sessions.open(PCM, "s", now=0.0)
    with pytest.raises(ResumeError) as err:
        sessions.open(config, config.session_id, now=1.0)
    assert err.value.code == code


def test_a_bad_session_id_or_offset_is_refused(pipeline):
    sessions = _sessions(pipeline)
    with pytest.raises(InputError, match="session_id"):
        sessions.open(StreamConfig(session_id="a b"), "a b", now=0.0)
    with pytest.raises(InputError, match="resume_offset"):
        sessions.open(StreamConfig(session_id="a", resume_offset=-1), "a", now=0.0)
    assert len(sessions) == 0


def test_the_rate_limit_allows_a_second_of_burst_then_refuses(pipeline):
    session, _ = _sessions(pipeline, max_bytes_per_s=16000).open(PCM, "r", now=0.0)
    session.audio(_pcm(8000), now=0.0)  # one second of 8 kHz pcm16: the rate
    session.audio(_pcm(8000), now=0.0)  # and one second of burst
    with pytest.raises(LimitExceeded):
        session.audio(_pcm(800), now=0.0)
    session.audio(_pcm(8000), now=2.0)  # time refills the bucket


def test_a_session_past_its_length_limit_ends(pipeline):
    session, _ = _sessions(pipeline, max_session_s=1.0).open(PCM, "long", now=0.0)
    audio = session.audio(_pcm(12000), now=0.0)
    pipeline.accept_bytes(session.state, audio)
    with pytest.raises(LimitExceeded, match="max_session_s"):
        session.fed(audio)


def test_finals_a_dropped_connection_missed_come_first_on_resume(pipeline):
    sessions = _sessions(pipeline)
    session, _ = sessions.open(PCM, "d", now=0.0)
    final = Final(stream_id="d", channel="mono", utterance_id="d/mono/0", utterance_index=0, text="hello")
    partial = Partial(stream_id="d", channel="mono", utterance_id="d/mono/1", utterance_index=1, text="wor")
    enriched = Enriched(transcript=final)
    session.undelivered([partial, final, enriched])
    session.frames = 1234
    info, *missed = session.welcome(resumed=True, grace_s=30.0)
    assert isinstance(info, SessionInfo) and (info.offset, info.resumed, info.session_id) == (1234, True, "d")
    assert missed == [final, enriched]  # a partial is stale by the time the client is back
    assert session.welcome(resumed=True, grace_s=30.0)[1:] == []
