"""Every TTS engine of the training recipe renders speech (a broken engine silently drops its share)."""

from __future__ import annotations

import numpy as np
import pytest

from models.train.tts import ENGINE_SHARES, SAMPLE_RATE, VOICES, speak


@pytest.mark.parametrize("engine", sorted(ENGINE_SHARES))
def test_each_training_engine_speaks(engine):
    audio = speak("four one one two", engine, VOICES[engine][0], seed=1)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.5 < audio.size / SAMPLE_RATE < 6.0
    assert np.abs(audio).max() > 0.05
