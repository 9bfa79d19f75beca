"""Energy VAD and the early endpoint it gives the pipeline."""

from pathlib import Path

import numpy as np
import pytest

from operators.audio import encode_audio
from operators.vad import EnergyVad, VadConfig
from stream.events import Final, StreamConfig
from tests.recognizer import feed

SPEECH = Path(__file__).parent / "fixtures" / "speech16k.flac"


def _tone(seconds: float, dbfs: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    return (10 ** (dbfs / 20) * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def test_quiet_run_counts_trailing_quiet_frames_whatever_the_chunking():
    audio = np.concatenate([_noise(0.3, -70), _tone(0.5, -12), _noise(0.7, -70, seed=1)])
    vad = EnergyVad()
    results = []
    for step in (160, 333, 4000, audio.size):
        state = vad.new_state()
        for i in range(0, audio.size, step):
            vad.feed(state, audio[i : i + step])
        results.append((state.frames, state.quiet_frames, state.floor_db))
    assert len(set(results)) == 1
    frames, quiet, _ = results[0]
    assert frames == 150 and quiet == 70


def test_a_steady_background_becomes_quiet_and_speech_over_it_does_not():
    vad = EnergyVad(VadConfig(floor_rise_db_per_s=2.0))
    state = vad.new_state()
    vad.feed(state, _tone(1.0, -15))  # a stream that starts mid-speech
    assert state.quiet_frames == 0
    vad.feed(state, _noise(8.0, -35))  # louder than the absolute quiet level: quiet once the floor has risen
    assert 300 <= state.quiet_frames < 800
    vad.feed(state, _tone(0.2, -15) + _noise(0.2, -35, seed=2))
    assert state.quiet_frames == 0
    vad.feed(state, _noise(0.3, -35, seed=3))
    assert state.quiet_frames == 30


def test_stop_takes_the_audio_up_to_the_frame_it_names():
    vad = EnergyVad()
    state = vad.new_state(start_s=2.0)
    vad.feed(state, np.concatenate([_noise(0.1, -70), _tone(0.105, -12)]))  # 20 whole frames, 80 samples held
    taken = vad.feed(state, np.zeros(16000, np.float32), stop=lambda end_s, quiet: quiet == 20)
    # Frame 21 is tone + silence; then 20 quiet frames: 21 frames after the held 80 samples.
    assert state.quiet_frames == 20 and state.frames == 41
    assert taken == 21 * 160 - 80
    assert state.end_s(vad.config) == pytest.approx(2.41)


@pytest.fixture(scope="module")
def pipelines():
    from stream.app import DecodingConfig, build_pipeline

    # Endpoint timing is the first pass's: the second pass rewrites a final's text, not when it comes.
    return {vad: build_pipeline(decoding=DecodingConfig(vad_endpoint=vad, second_pass=False)) for vad in (True, False)}


def _first_final(pipeline, audio: np.ndarray, step: int) -> tuple[float, Final]:
    state = pipeline.create_stream("v", StreamConfig())
    for i in range(0, audio.size, step):
        finals = [e for e in feed(pipeline, state, encode_audio(audio[i : i + step], "pcm16")) if isinstance(e, Final)]
        if finals:
            return min(audio.size, i + step) / 16000, finals[0]
    raise AssertionError("no final")


@pytest.mark.parametrize("lead_s", [0.05, 0.15, 0.25])
def test_energy_ends_the_utterance_at_the_silence_rule_not_the_chunk_after(pipelines, lead_s):
    from models.train.data import load_audio

    speech = load_audio(SPEECH)
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(int(lead_s * 16000), np.float32), speech, np.zeros(32000, np.float32)])
    audio += 1e-4 * rng.standard_normal(audio.size).astype(np.float32)
    at_vad, final_vad = _first_final(pipelines[True], audio, 320)
    at_model, final_model = _first_final(pipelines[False], audio, 320)
    assert final_vad.text == final_model.text and final_vad.text
    rule = final_vad.words[-1].end + 0.8
    assert at_vad <= at_model
    assert at_vad - rule <= 0.05  # the 20 ms message that completes the rule, and a frame
    # The model alone waits for the chunk holding the rule's last frame, and for its look-ahead.
    spec = pipelines[False].acoustic.spec
    assert at_model - rule <= spec.chunk_frames * spec.frame_seconds + pipelines[False]._probe_lookahead_s + 0.05
    # The checkpoint is a point of the audio: any cut of the messages gives the same final.
    for step in (1000, 5919):
        assert _first_final(pipelines[True], audio, step)[1] == final_vad
