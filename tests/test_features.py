"""Streaming log-mel: chunking invariance and parity with Kaldi fbank."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from operators.features import FeatureConfig, LogMelOperator

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
FIXTURE = Path(__file__).parent / "fixtures" / "speech16k.flac"


def _speech() -> np.ndarray:
    x, sr = sf.read(FIXTURE, dtype="float32")
    assert sr == 16000
    return x


def test_one_chunk_equals_random_7_to_700_ms_chunks():
    x = _speech()
    op = LogMelOperator()
    whole = op.feed(op.new_state(), x)
    rng = np.random.default_rng(7)
    state, parts, i = op.new_state(), [], 0
    while i < x.size:
        n = int(rng.integers(112, 11200))  # 7 ms .. 700 ms at 16 kHz
        parts.append(op.feed(state, x[i : i + n]))
        i += n
    chunked = np.concatenate(parts)
    assert chunked.shape == whole.shape == (1 + (x.size - 400) // 160, 80)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)
    assert state.frames_emitted == whole.shape[0]


def test_matches_torchaudio_kaldi_fbank():
    torch = pytest.importorskip("torch", reason="torch is in the [train] extra")
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi", reason="torchaudio is in the [train] extra")
    x = _speech()
    op = LogMelOperator()
    ours = op.feed(op.new_state(), x)
    ref = kaldi.fbank(
        torch.from_numpy(x.astype(np.float64) * 32768)[None], num_mel_bins=80, dither=0.0, sample_frequency=16000
    ).numpy()
    assert ours.shape == ref.shape
    rel = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
    assert rel < 1e-4, rel
    assert np.abs(ours - ref).max() < 1e-3


def test_short_audio_makes_no_frame_and_bad_shape_raises():
    op = LogMelOperator()
    st = op.new_state()
    assert op.feed(st, np.zeros(399, np.float32)).shape == (0, 80)
    assert op.feed(st, np.zeros(1, np.float32)).shape == (1, 80)
    with pytest.raises(ValueError, match=r"expected samples of shape \(N,\)"):
        op.feed(st, np.zeros((4, 2), np.float32))


def test_config_round_trips_through_metadata():
    cfg = FeatureConfig(num_mel_bins=64, low_freq=40.0)
    assert FeatureConfig.from_metadata(cfg.as_metadata()) == cfg
