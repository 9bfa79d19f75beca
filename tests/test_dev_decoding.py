"""Decoder parity on real development audio with the bundled model and LM."""

from pathlib import Path

import numpy as np
import pytest

from models.data import load_audio, real_speech_splits
from models.runtime import default_model_path, load_acoustic
from operators.acoustic import AcousticOperator
from operators.ctc import BeamConfig, BeamDecoder, EndpointConfig
from operators.features import LogMelOperator
from stream.app import BUNDLED_LM, DecodingConfig, lm_config
from stream.events import Final

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
NO_ENDPOINT = EndpointConfig(silence_after_speech_s=1e9, silence_no_speech_s=1e9, max_utterance_s=1e9)

pytestmark = [
    pytest.mark.skipif(not default_model_path().exists(), reason="no bundled acoustic model"),
    pytest.mark.skipif(not DATA.exists(), reason="../shared/data is not here"),
]


@pytest.fixture(scope="module")
def dev_log_probs():
    model = AcousticOperator(load_acoustic())
    feats = LogMelOperator(model.spec.features)
    out = []
    for split in real_speech_splits(DATA).values():
        for u in split["dev"][::10]:
            st = model.new_state()
            x = feats.feed(feats.new_state(), load_audio(u.path))
            lps = model.feed(st, x) + model.flush(st)
            if lps:
                out.append(np.concatenate(lps))
    return model.spec, out


@pytest.mark.skipif(not (BUNDLED_LM / "lm.bin").exists(), reason="no bundled LM")
def test_streaming_beam_equals_pyctcdecode_on_dev_utterances(dev_log_probs):
    spec, utterances = dev_log_probs
    beam = BeamConfig(beam_width=16)
    dec = BeamDecoder(spec.vocab, spec.frame_seconds, NO_ENDPOINT, beam=beam, lm=lm_config(DecodingConfig()))
    same = 0
    for lp in utterances:
        state = dec.new_state("d", "mono")
        events = []
        for i in range(0, len(lp), 8):
            events += dec.feed(state, lp[i : i + 8])
        events += dec.flush(state)
        ours = " ".join(e.text for e in events if isinstance(e, Final))
        ref = dec.reference.decode_beams(lp, beam_width=beam.beam_width, beam_prune_logp=beam.beam_prune_logp,
                                         token_min_logp=beam.token_min_logp)[0][0]
        same += ours == ref
    rate = same / len(utterances)
    print(f"parity with pyctcdecode on {len(utterances)} dev utterances: {rate:.1%}")
    assert rate >= 0.98
