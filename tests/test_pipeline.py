"""The per-stream pipeline on a tiny random model: mechanics, channels, bad input, isolation."""

import numpy as np
import pytest

from operators.audio import encode_audio
from stream.errors import AudioFormatError, ConfigError, DecodeError
from stream.events import EndOfStream, Final, Partial, StreamConfig
from stream.pipeline import MAX_HOTWORD_CHARS, MAX_HOTWORDS, channel_names
from tests.recognizer import feed


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import build_pipeline

    return build_pipeline(model=tiny_onnx["step"])


def _noise(seconds: float, rate: int, channels: int, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))).astype(np.float32)


def _run(pipeline, sid, config, audio, frame_s=0.02):
    state = pipeline.create_stream(sid, config)
    step = int(config.sample_rate * frame_s)
    events = []
    for i in range(0, audio.shape[0], step):
        pipeline.accept_bytes(state, encode_audio(audio[i : i + step], config.encoding))
        events += pipeline.decode_streams([state])
    return state, events + pipeline.finish(state)


def test_stereo_mulaw_call_gives_per_channel_results_and_one_end(pipeline):
    cfg = StreamConfig(sample_rate=8000, encoding="mulaw", channels=2, endpoint_silence_s=0.2)
    state, events = _run(pipeline, "call-7", cfg, _noise(3.0, 8000, 2))
    assert [c.name for c in state.channels] == ["agent", "customer"]
    assert isinstance(events[-1], EndOfStream) and events[-1].audio_seconds == pytest.approx(3.0)
    assert sum(isinstance(e, EndOfStream) for e in events) == 1
    for e in events:
        if isinstance(e, (Partial, Final)):
            assert e.channel in ("agent", "customer") and e.stream_id == "call-7"
            assert e.utterance_id == f"call-7/{e.channel}/{e.utterance_index}"
    # 3 s of audio and the near-silent tail after it -> about 3.2 s / 40 ms encoder frames per channel.
    for ch in state.channels:
        assert abs(ch.acoustic.frames_out - (3.0 + pipeline.end_tail_samples / pipeline.sample_rate) / 0.04) <= 2


def test_chunking_of_the_audio_does_not_change_the_transcripts(pipeline):
    cfg = StreamConfig(sample_rate=16000, encoding="pcm16", channels=1, endpoint_silence_s=0.2)
    audio = _noise(2.0, 16000, 1, seed=3)
    _, a = _run(pipeline, "a", cfg, audio, frame_s=0.02)
    _, b = _run(pipeline, "a", cfg, audio, frame_s=0.37)
    assert [e for e in a if isinstance(e, Final)] == [e for e in b if isinstance(e, Final)]


def test_bad_config_is_rejected_clearly(pipeline):
    with pytest.raises(AudioFormatError, match="unknown encoding"):
        pipeline.create_stream("s", StreamConfig(encoding="opus"))
    with pytest.raises(AudioFormatError, match="outside"):
        pipeline.create_stream("s", StreamConfig(sample_rate=0))
    with pytest.raises(ConfigError, match="positive"):
        pipeline.create_stream("s", StreamConfig(endpoint_silence_s=-1.0))
    with pytest.raises(ConfigError, match="2 names for 1 channel"):
        channel_names(StreamConfig(channel_names=("a", "b")))


@pytest.mark.parametrize(
    "config,match",
    [
        (StreamConfig(hotwords=tuple((f"word{i}", 5.0) for i in range(MAX_HOTWORDS + 1))), "at most 100 hotwords"),
        (StreamConfig(hotwords=(("a" * (MAX_HOTWORD_CHARS + 1), 5.0),)), "at most 100 characters, got 101"),
        (StreamConfig(hotwords=(("acme", 1.7e308),)), "weights are at most 100"),
        (StreamConfig(channels=2, channel_names=("agent", "x" * 65)), "1-64 characters each"),
        (StreamConfig(channel_names=("",)), "1-64 characters each"),
    ],
)
def test_config_floods_are_refused_before_the_stream_opens(pipeline, config, match):
    """A 556 KB config of 30,000 hotwords held the server's event loop for 4 s before these limits."""
    with pytest.raises(ConfigError, match=match):
        pipeline.create_stream("s", config)
    pipeline.create_stream("s", StreamConfig(hotwords=tuple((f"word{i}", 5.0) for i in range(MAX_HOTWORDS))))


def test_bad_audio_in_one_stream_leaves_another_untouched(pipeline):
    cfg = StreamConfig(sample_rate=16000, encoding="pcm16")
    audio = _noise(1.0, 16000, 1, seed=5)
    _, ref = _run(pipeline, "good", cfg, audio)
    good, bad = pipeline.create_stream("good", cfg), pipeline.create_stream("bad", cfg)
    events = []
    for i in range(0, audio.shape[0], 320):
        events += feed(pipeline, good, encode_audio(audio[i : i + 320], "pcm16"))
        with pytest.raises(DecodeError, match="multiple of 2 bytes"):
            feed(pipeline, bad, b"\x01\x02\x03")
    assert events + pipeline.finish(good) == ref


def test_dither_depends_on_the_sample_position_only(pipeline):
    """The same samples get the same dither however the audio is cut, and in a resumed stream."""
    config = StreamConfig(sample_rate=16000, encoding="pcm16")
    whole, resumed = pipeline.create_stream("a", config).channels[0], pipeline.create_stream("b", config, start_s=1.0).channels[0]
    zeros = np.zeros(3 * 16000, np.float32)
    cut = np.concatenate([pipeline._dither(whole, zeros[:1000]), pipeline._dither(whole, zeros[1000:])])
    assert np.array_equal(cut[16000:], pipeline._dither(resumed, zeros[:32000]))
    assert 10 * np.log10(np.mean(cut.astype(np.float64) ** 2)) == pytest.approx(-75.0, abs=0.5)
