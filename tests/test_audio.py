"""Audio front-end: codecs, validation, resampling."""

import warnings

import numpy as np
import pytest

from operators.audio import (
    AudioDecoder,
    AudioFormat,
    Resampler,
    alaw_decode,
    alaw_encode,
    encode_audio,
    mulaw_decode,
    mulaw_encode,
)
from stream.errors import AudioFormatError, DecodeError


def _audioop():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop", reason="audioop (removed in Python 3.13) is the G.711 reference")


@pytest.mark.parametrize("law", ["ulaw", "alaw"])
def test_g711_tables_match_the_reference(law):
    audioop = _audioop()
    codes = np.arange(256, dtype=np.uint8)
    ref = np.frombuffer(getattr(audioop, f"{law}2lin")(codes.tobytes(), 2), dtype="<i2") / 32768.0
    ours = mulaw_decode(codes) if law == "ulaw" else alaw_decode(codes)
    np.testing.assert_array_equal(ours, ref.astype(np.float32))


@pytest.mark.parametrize("enc,dec", [(mulaw_encode, mulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_encode_is_the_inverse_of_decode(enc, dec):
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(dec(enc(dec(codes))), dec(codes))
    x = np.linspace(-1, 1, 10001, dtype=np.float32)
    assert np.abs(dec(enc(x)) - x).max() < 0.035  # G.711 step at full scale


@pytest.mark.parametrize("encoding", ["pcm16", "f32", "mulaw", "alaw"])
def test_decode_round_trip_stereo(encoding):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((800, 2))).clip(-1, 1).astype(np.float32)
    fmt = AudioFormat(encoding=encoding, sample_rate=8000, channels=2)
    dec = AudioDecoder(fmt)
    state = dec.new_state()
    y = dec.feed(state, encode_audio(x, encoding))
    assert y.shape == (800, 2) and y.dtype == np.float32
    tol = {"pcm16": 1 / 32768, "f32": 0, "mulaw": 0.035, "alaw": 0.035}[encoding]
    assert np.abs(y - x).max() <= tol
    assert state.samples_decoded == 800


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"encoding": "opus"}, "unknown encoding 'opus'"),
        ({"sample_rate": 0}, "outside"),
        ({"sample_rate": 1_000_000_000}, "outside"),
        ({"sample_rate": 16000.0}, "integer"),
        ({"channels": 0}, "outside"),
    ],
)
def test_bad_formats_are_rejected_clearly(kwargs, match):
    with pytest.raises(AudioFormatError, match=match):
        AudioFormat(**kwargs)


def test_odd_pcm16_byte_count_is_rejected():
    dec = AudioDecoder(AudioFormat("pcm16", 16000, 1))
    with pytest.raises(DecodeError, match="multiple of 2 bytes.*got 3"):
        dec.feed(dec.new_state(), b"\x00\x01\x02")


def test_nan_in_float32_is_rejected():
    dec = AudioDecoder(AudioFormat("f32", 16000, 1))
    x = np.zeros(10, dtype="<f4")
    x[7] = np.nan
    with pytest.raises(DecodeError, match="NaN or infinity at sample 7"):
        dec.feed(dec.new_state(), x.tobytes())


def test_a_bad_stream_leaves_other_streams_alone():
    dec = AudioDecoder(AudioFormat("pcm16", 16000, 1))
    good, bad = dec.new_state(), dec.new_state()
    dec.feed(good, b"\x00\x00" * 10)
    with pytest.raises(DecodeError):
        dec.feed(bad, b"\x00")
    assert dec.feed(good, b"\x00\x00" * 5).shape == (5, 1)
    assert good.samples_decoded == 15


def test_streaming_resampler_is_chunking_invariant_and_accurate():
    t = np.arange(8000 * 2) / 8000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    rs = Resampler(8000, 16000)
    whole_state = rs.new_state()
    whole = np.concatenate([rs.feed(whole_state, x), rs.flush(whole_state)])
    rng = np.random.default_rng(1)
    state, parts, i = rs.new_state(), [], 0
    while i < x.size:
        n = int(rng.integers(1, 3000))
        parts.append(rs.feed(state, x[i : i + n]))
        i += n
    parts.append(rs.flush(state))
    chunked = np.concatenate(parts)
    assert whole.size == chunked.size == 32000
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    ref = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    assert np.abs(whole[1000:-1000] - ref[1000:-1000]).max() < 1e-3
