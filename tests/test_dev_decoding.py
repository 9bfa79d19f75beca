"""Decoder parity on real development audio with the bundled model and LM."""

from pathlib import Path

import numpy as np
import pytest

from models.train.data import load_audio, real_speech_splits
from models.runtime import load_acoustic
from operators.acoustic import AcousticOperator
from operators.ctc import BeamConfig, BeamDecoder, EndpointConfig
from operators.features import LogMelOperator
from stream.app import BUNDLED_LM, DecodingConfig, lm_config
from stream.events import Final
from tests.recognizer import feed

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech"
NO_ENDPOINT = EndpointConfig(silence_after_speech_s=1e9, silence_no_speech_s=1e9, max_utterance_s=1e9)

pytestmark = [
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


def _stream_finals(pipeline, audio: np.ndarray) -> list[Final]:
    from operators.audio import encode_audio
    from stream.events import StreamConfig

    state = pipeline.create_stream("long", StreamConfig())
    events = []
    for i in range(0, audio.size, 320):
        events += feed(pipeline, state, encode_audio(audio[i : i + 320], "pcm16"))
    return [e for e in events + pipeline.finish(state) if isinstance(e, Final)]


@pytest.mark.parametrize(("noise", "bound"), [(3e-4, 0.17), (0.0, 0.17)], ids=["noise", "digital-silence"])
def test_long_multi_utterance_audio_gives_one_final_per_utterance_and_keeps_the_words(noise, bound):
    """45 dev utterances with 1.2 s gaps in one stream, under -70 dBFS noise or with gaps of zeros."""
    from models.metrics import ErrorCounter
    from stream.app import build_pipeline

    pipeline = build_pipeline(decoding=DecodingConfig())
    utterances = [u for split in real_speech_splits(DATA).values() for u in split["dev"][:: max(1, len(split["dev"]) // 15)][:15]]
    gap = np.zeros(int(1.2 * 16000), np.float32)
    clips = [load_audio(u.path) for u in utterances]
    audio = np.concatenate([part for clip in clips for part in (clip, gap)])
    audio += noise * np.random.default_rng(0).standard_normal(audio.size).astype(np.float32)
    finals = _stream_finals(pipeline, audio)
    # Each utterance alone, in the same samples: the gap before it (as its lead-in), itself
    # and the gap after it. What the stream loses beyond that is the boundaries' cost.
    ends = np.cumsum([clip.size + gap.size for clip in clips])
    starts = np.concatenate([[0], ends[:-1] - gap.size])
    alone = [" ".join(f.text for f in _stream_finals(pipeline, audio[a:b])) for a, b in zip(starts, ends)]
    long_counter, alone_counter = ErrorCounter(), ErrorCounter()
    long_counter.add(" ".join(u.text for u in utterances), " ".join(f.text for f in finals))
    for u, text in zip(utterances, alone):
        alone_counter.add(u.text, text)
    print(f"{len(utterances)} utterances in one stream of {audio.size / 16000:.0f} s: {len(finals)} finals; "
          f"WER {long_counter.wer:.3f}, CER {long_counter.cer:.3f} "
          f"(each utterance alone, after its 1.2 s lead-in: {alone_counter.wer:.3f}, {alone_counter.cer:.3f})")
    assert abs(len(finals) - len(utterances)) <= 0.05 * len(utterances)
    assert all(f.endpoint == "silence" for f in finals[:-1])
    # Boundaries cost few words: the stream scores within 0.1 of its utterances decoded one by one.
    assert long_counter.wer <= alone_counter.wer + 0.1
    assert long_counter.cer <= alone_counter.cer + 0.1
    # And long streams do not regress: 0.149 (7 of 47 words) in noise and with gaps of zeros,
    # with a word of slack.
    assert long_counter.wer <= bound


def test_context_stays_short_until_an_utterance_has_a_character():
    """Quiet fills at most ``_QUIET_CONTEXT_S`` of the model's attention context; speech all of it."""
    from operators.audio import encode_audio
    from stream.app import build_pipeline
    from stream.events import StreamConfig
    from stream.pipeline import _QUIET_CONTEXT_S

    pipe = build_pipeline(decoding=DecodingConfig(lm=None, beam_width=4))
    state = pipe.create_stream("s", StreamConfig(sample_rate=16000, encoding="pcm16"))
    channel = state.channels[0]
    cap = round(_QUIET_CONTEXT_S / pipe.acoustic.spec.frame_seconds)
    quiet = 10 ** (-60 / 20) * np.random.default_rng(0).standard_normal(3 * 16000)
    feed(pipe, state, encode_audio(quiet[:, None].astype(np.float32), "pcm16"))
    assert not channel.search.speech
    assert 0 < channel.acoustic.cache_len <= cap
    lengths = []
    speech = load_audio(real_speech_splits(DATA)["an4"]["dev"][0].path)
    for i in range(0, speech.size, 1600):
        feed(pipe, state, encode_audio(speech[i : i + 1600, None], "pcm16"))
        lengths.append((channel.search.speech, channel.acoustic.cache_len))
    assert any(speaking and n > cap for speaking, n in lengths)
    assert all(n <= cap for speaking, n in lengths if not speaking)


@pytest.mark.parametrize(("level_dbfs", "bound_s"), [(-38.0, None), (-80.0, 0.02)], ids=["noise", "quiet"])
def test_final_comes_soon_after_the_endpoint_silence(level_dbfs, bound_s):
    """Noise the energy VAD cannot call quiet: the model decides at a probe, not a whole chunk later.
    Quiet: the energy path ends the utterance on the 20 ms piece where the rule's silence is met,
    and the final's ``end`` says so."""
    from operators.audio import encode_audio
    from stream.app import build_pipeline
    from stream.events import StreamConfig

    pipe = build_pipeline(decoding=DecodingConfig(lm=None, beam_width=4, second_pass=False))
    splits = real_speech_splits(DATA)
    rng = np.random.default_rng(0)
    delays, after_words = [], []
    for u in splits["speechcommands"]["dev"][:40:5] + splits["fsdd"]["dev"][:40:10]:
        noise = 10 ** (level_dbfs / 20) * rng.standard_normal(int(1.6 * 16000))  # -38: 17 dB over the VAD's quiet
        audio = np.concatenate([load_audio(u.path), noise.astype(np.float32)])
        state = pipe.create_stream("s", StreamConfig(sample_rate=16000, encoding="pcm16"))
        for i in range(0, audio.size, 320):
            for e in feed(pipe, state, encode_audio(audio[i : i + 320, None], "pcm16")):
                if isinstance(e, Final):
                    rule = e.words[-1].end + pipe.ctc.endpoint.silence_after_speech_s
                    # The rule reads the greedy path, whose last character can come after the
                    # beam's last word; where it fired later, ``end`` is where it fired.
                    delays.append((i + 320) / 16000 - max(e.end, rule))
                    after_words.append((i + 320) / 16000 - rule)
        pipe.finish(state)
    print(f"{len(delays)} finals at {level_dbfs} dBFS, delay beyond where the endpoint rule fired: max {max(delays):.2f} s "
          f"(beyond the beam's last word end + the rule's silence: max {max(after_words):.2f} s)")
    assert len(delays) >= 8
    # Noise: the probe waits only for the audio the model reads past the rule's last frame (its
    # look-ahead), not for the chunk's end. Quiet: the energy ends it on the 20 ms message where
    # the rule's silence is met, and the final's ``end`` is there.
    assert max(delays) <= (pipe._probe_lookahead_s + 0.02 if bound_s is None else bound_s)


def test_ten_minute_stream_keeps_bounded_state_and_one_final_per_utterance():
    """Positions restart in every encoder window, and the second pass sees one utterance: a stream
    of any length works, and what a channel keeps for the second pass stays one utterance long.
    Measured: 337 utterances, 326 finals, WER 0.130, at most 6 s of features kept (about 20 s
    of compute)."""
    from models.metrics import ErrorCounter
    from operators.audio import encode_audio
    from stream.app import build_pipeline
    from stream.events import StreamConfig

    pipeline = build_pipeline(decoding=DecodingConfig())
    utterances = [u for split in real_speech_splits(DATA).values() for u in split["dev"]]
    rng = np.random.default_rng(0)
    gap = np.zeros(16000, np.float32)
    clips, total = [], 0
    while total < 600 * 16000:
        u = utterances[int(rng.integers(len(utterances)))]
        clips.append((u, load_audio(u.path)))
        total += clips[-1][1].size + gap.size
    audio = np.concatenate([part for _, clip in clips for part in (clip, gap)])
    audio += 3e-4 * rng.standard_normal(audio.size).astype(np.float32)
    state = pipeline.create_stream("ten-minutes", StreamConfig())
    finals, kept = [], []
    for i in range(0, audio.size, 1600):
        finals += [e for e in feed(pipeline, state, encode_audio(audio[i : i + 1600], "pcm16")) if isinstance(e, Final)]
        ch = state.channels[0]
        kept.append(sum(k.shape[0] for k in ch.acoustic.kept))
    finals += [e for e in pipeline.finish(state) if isinstance(e, Final)]
    counter = ErrorCounter()
    counter.add(" ".join(u.text for u, _ in clips), " ".join(f.text for f in finals))
    print(f"{audio.size / 16000:.0f} s, {len(clips)} utterances, {len(finals)} finals, WER {counter.wer:.3f}, "
          f"most feature frames kept {max(kept)}")
    assert abs(len(finals) - len(clips)) <= 0.05 * len(clips)
    assert counter.wer <= 0.16
    assert max(kept) <= 100 * (pipeline.ctc.endpoint.max_utterance_s + 6)
    assert finals[-1].end > 590
