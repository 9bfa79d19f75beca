"""CTC decoding alone: greedy, our streaming beam search, and pyctcdecode, on the same log-probs.

The acoustic model runs once per dev utterance; every decoder then sees the
same log-probs. Ours gets them chunk by chunk (8 frames, as in serving) with
the endpoint rules off; pyctcdecode's ``decode_beams`` gets the whole
utterance (it has no incremental API in its current release). Cost is
milliseconds of decoding per second of audio, on one core.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import dev_sets, table
from models.train.data import load_audio
from models.metrics import ErrorCounter
from models.runtime import load_acoustic
from operators.acoustic import AcousticOperator
from operators.ctc import BeamConfig, BeamDecoder, EndpointConfig, GreedyDecoder
from operators.features import LogMelOperator
from stream.app import DecodingConfig, lm_config
from stream.events import Final

NO_ENDPOINT = EndpointConfig(silence_after_speech_s=1e9, silence_no_speech_s=1e9, max_utterance_s=1e9)


def _log_probs(n: int) -> tuple[object, list[tuple[str, np.ndarray, float]]]:
    model = AcousticOperator(load_acoustic())
    feats = LogMelOperator(model.spec.features)
    out = []
    for utts in dev_sets(n).values():
        for u in utts:
            audio = load_audio(u.path)
            state = model.new_state()
            lps = model.feed(state, feats.feed(feats.new_state(), audio)) + model.flush(state)
            if lps:
                out.append((u.text, np.concatenate(lps), audio.size / 16000))
    return model.spec, out


def _streaming(decoder, data) -> tuple[float, float]:
    counter, spent, audio = ErrorCounter(), 0.0, 0.0
    for ref, lp, seconds in data:
        state = decoder.new_state("bench", "mono")
        t0 = time.perf_counter()
        events = []
        for i in range(0, len(lp), 8):
            events += decoder.feed(state, lp[i : i + 8])
        events += decoder.flush(state)
        spent += time.perf_counter() - t0
        audio += seconds
        counter.add(ref, " ".join(e.text for e in events if isinstance(e, Final)))
    return counter.wer, 1000 * spent / audio


def _reference(decoder: BeamDecoder, beam: BeamConfig, data) -> tuple[float, float]:
    counter, spent, audio = ErrorCounter(), 0.0, 0.0
    for ref, lp, seconds in data:
        t0 = time.perf_counter()
        hyp = decoder.reference.decode_beams(lp, beam_width=beam.beam_width, beam_prune_logp=beam.beam_prune_logp,
                                             token_min_logp=beam.token_min_logp)[0][0]
        spent += time.perf_counter() - t0
        audio += seconds
        counter.add(ref, hyp)
    return counter.wer, 1000 * spent / audio


def compare(n: int, widths: tuple[int, ...] = (4, 8, 16, 32)) -> tuple[str, dict]:
    spec, data = _log_probs(n)
    lm = lm_config(DecodingConfig())
    rows, raw = [], {}
    wer, ms = _streaming(GreedyDecoder(spec.vocab, spec.frame_seconds, NO_ENDPOINT), data)
    rows.append(("greedy (streaming)", "-", "-", wer, ms))
    raw["greedy"] = {"wer": wer, "ms_per_audio_s": ms}
    for width in widths:
        beam = BeamConfig(beam_width=width)
        for with_lm in (False, True):
            dec = BeamDecoder(spec.vocab, spec.frame_seconds, NO_ENDPOINT, beam=beam, lm=lm if with_lm else None)
            wer, ms = _streaming(dec, data)
            rows.append(("callstream beam (streaming)", width, "yes" if with_lm else "no", wer, ms))
            raw[f"ours_b{width}_{'lm' if with_lm else 'nolm'}"] = {"wer": wer, "ms_per_audio_s": ms}
            if with_lm:
                wer, ms = _reference(dec, beam, data)
                rows.append(("pyctcdecode decode_beams (whole utterance)", width, "yes", wer, ms))
                raw[f"pyctcdecode_b{width}_lm"] = {"wer": wer, "ms_per_audio_s": ms}
    text = table(f"CTC decoders on the same log-probs ({len(data)} dev utterances; LM = domain + general English)",
                 ["decoder", "beam", "LM", "WER", "ms per audio s"], rows)
    return text, raw
