"""Streaming beam search: parity with pyctcdecode, stable partials, hotwords."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.ctc import BeamConfig, BeamDecoder, EndpointConfig, LanguageModelConfig
from stream.events import Final, Partial
from tests.lmutil import write_arpa

VOCAB = ("", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
FS = 0.04
NO_ENDPOINT = EndpointConfig(silence_after_speech_s=1e9, silence_no_speech_s=1e9, max_utterance_s=1e9)
SENTENCES = ["my card is lost", "i lost my card", "block my card please", "what is my balance",
             "i want to pay my bill", "the card was stolen", "can you help me"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return LanguageModelConfig(path=write_arpa(SENTENCES, tmp_path_factory.mktemp("lm") / "lm.arpa"))


def noisy_logits(text: str, rng: np.random.Generator, noise: float = 1.5) -> np.ndarray:
    """Log-probs for ``text``: 1-3 frames per char, blanks between, Gaussian noise on the logits."""
    frames = []
    for ch in text:
        for _ in range(int(rng.integers(1, 3))):
            frames.append(VOCAB.index(ch))
        frames += [0] * int(rng.integers(0, 3))
    logits = rng.normal(0, noise, size=(len(frames) + 4, len(VOCAB)))
    for i, idx in enumerate([0, 0, *frames, 0, 0]):
        logits[i, idx] += 6.0
    logits -= np.log(np.exp(logits).sum(1, keepdims=True))
    return logits.astype(np.float32)


def stream(dec, logits, rng, hotwords=()):
    state = dec.new_state("s", "mono", endpoint=NO_ENDPOINT, hotwords=hotwords)
    events, i = [], 0
    while i < len(logits):
        k = int(rng.integers(1, 12))
        events += dec.feed(state, logits[i : i + k])
        i += k
    return events + dec.flush(state)



@pytest.mark.parametrize("with_lm", [False, True])
def test_blank_frames_take_the_short_step_with_the_same_nbest_and_scores(lm, with_lm):
    cfg = BeamConfig(beam_width=8, nbest=4)
    dec = BeamDecoder(VOCAB, FS, NO_ENDPOINT, beam=cfg, lm=lm if with_lm else None)
    rng = np.random.default_rng(1)
    blank_only = frames = 0
    for n in range(30):
        logits = noisy_logits(SENTENCES[n % len(SENTENCES)], rng, noise=0.7)
        above = (logits >= cfg.token_min_logp).sum(1)
        blank_only += int(((above == 1) & (logits.argmax(1) == 0)).sum())
        frames += len(logits)
        ref = dec.reference.decode_beams(logits, beam_width=cfg.beam_width, beam_prune_logp=cfg.beam_prune_logp,
                                         token_min_logp=cfg.token_min_logp)
        (final,) = [e for e in stream(dec, logits, rng) if isinstance(e, Final)]
        assert [(h.text, h.score) for h in final.nbest] == [(b[0], round(float(b[4]), 4)) for b in ref[:4]]
    assert blank_only / frames > 0.1  # the short step ran on a good share of frames

@pytest.mark.parametrize("with_lm", [False, True])
def test_streaming_finals_equal_pyctcdecode_decode_beams(lm, with_lm):
    cfg = BeamConfig(beam_width=8)
    dec = BeamDecoder(VOCAB, FS, NO_ENDPOINT, beam=cfg, lm=lm if with_lm else None)
    rng = np.random.default_rng(0)
    same = total = 0
    for n in range(60):
        text = SENTENCES[n % len(SENTENCES)] if n % 2 else " ".join(rng.choice(["car", "lost", "pay", "bill"], 3))
        logits = noisy_logits(text, rng)
        ref = dec.reference.decode_beams(logits, beam_width=cfg.beam_width, beam_prune_logp=cfg.beam_prune_logp,
                                         token_min_logp=cfg.token_min_logp)
        finals = [e for e in stream(dec, logits, rng) if isinstance(e, Final)]
        ours = finals[0].text if finals else ""
        total += 1
        same += ours == ref[0][0]
        if finals and ours == ref[0][0]:
            assert [w.text for w in finals[0].words] == [w for w, _ in ref[0][2]]
            assert [(round(w.start / FS), round(w.end / FS)) for w in finals[0].words] == [f for _, f in ref[0][2]]
    rate = same / total
    print(f"parity with pyctcdecode ({'LM' if with_lm else 'no LM'}): {same}/{total} = {rate:.1%}")
    assert rate >= 0.98


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(SENTENCES), min_size=1, max_size=3), st.integers(0, 10_000))
def test_stable_words_never_change_and_final_extends_them(lm, sentences, seed):
    # 11 silent frames end an utterance: the gap between sentences has 16; within one, spaces,
    # blanks and a noise-drowned letter made 8 (seed 314), so 0.3 s split a sentence.
    dec = BeamDecoder(VOCAB, FS, EndpointConfig(silence_after_speech_s=0.44), beam=BeamConfig(beam_width=6), lm=lm)
    rng = np.random.default_rng(seed)
    logits = np.concatenate([np.concatenate([noisy_logits(s, rng, noise=2.5), _silence(12)]) for s in sentences])
    state = dec.new_state("s", "mono")
    events, i = [], 0
    while i < len(logits):
        k = int(rng.integers(1, 10))
        events += dec.feed(state, logits[i : i + k])
        i += k
    events += dec.flush(state)
    stable: dict[int, list[str]] = {}
    finals: dict[int, int] = {}
    for e in events:
        words = [w.text for w in e.words] if isinstance(e, (Partial, Final)) else []
        if isinstance(e, Partial):
            prev = stable.get(e.utterance_index, [])
            assert words[: len(prev)] == prev, (prev, words)
            stable[e.utterance_index] = words[: e.stable]
        elif isinstance(e, Final):
            prev = stable.get(e.utterance_index, [])
            assert words[: len(prev)] == prev
            finals[e.utterance_index] = finals.get(e.utterance_index, 0) + 1
    assert all(n == 1 for n in finals.values())
    assert len(finals) == len(sentences)


def _silence(n: int) -> np.ndarray:
    lp = np.full((n, len(VOCAB)), -12.0, np.float32)
    lp[:, 0] = -1e-4
    return lp


def test_hotword_recovers_a_word_the_lm_does_not_know(lm):
    rng = np.random.default_rng(5)
    dec = BeamDecoder(VOCAB, FS, NO_ENDPOINT, beam=BeamConfig(beam_width=16), lm=lm)
    hits_plain = hits_hot = 0
    for _ in range(20):
        logits = noisy_logits("my card is zorvex", rng, noise=2.0)
        # Blur the rare word: its letters get competition from neighbours.
        plain = [e for e in stream(dec, logits, rng) if isinstance(e, Final)]
        hot = [e for e in stream(dec, logits, rng, hotwords=(("zorvex", 12.0),)) if isinstance(e, Final)]
        hits_plain += bool(plain) and "zorvex" in plain[0].text.split()
        hits_hot += bool(hot) and "zorvex" in hot[0].text.split()
    assert hits_hot >= 18 and hits_hot >= 3 * max(hits_plain, 1) or hits_plain == 0 and hits_hot >= 18


def test_nbest_and_confidences(lm):
    dec = BeamDecoder(VOCAB, FS, NO_ENDPOINT, beam=BeamConfig(beam_width=8, nbest=3), lm=lm)
    rng = np.random.default_rng(2)
    logits = noisy_logits("i lost my card", rng, noise=0.8)
    (final,) = [e for e in stream(dec, logits, rng) if isinstance(e, Final)]
    assert final.text == dec.reference.decode_beams(logits, beam_width=8)[0][0]
    assert "i lost my card" in [h.text for h in final.nbest]
    assert 1 <= len(final.nbest) <= 3 and final.nbest[0].text == final.text
    assert all(a.score >= b.score for a, b in zip(final.nbest, final.nbest[1:]))
    assert all(0.0 < w.confidence <= 1.0 and w.end > w.start for w in final.words)


def test_general_english_lm_is_clean_and_mixes_with_the_domain_lm(lm):
    import kenlm

    from models.train.lm import ensure_general_lm

    folder = ensure_general_lm()
    words = (folder / "unigrams.txt").read_text().split()
    assert len(words) > 50000 and all(w.replace("'", "").isalpha() and w.islower() for w in words)
    general = kenlm.Model(str(folder / "lm.bin"))
    assert general.order == 3
    assert general.score("i lost my card", bos=True, eos=True) > general.score("card my lost i", bos=True, eos=True)
    # Real English: a few log10 units per word, not the -1e30 of a mis-converted model.
    assert -6.0 * 5 < general.score("i lost my card", bos=True, eos=True) < 0.0

    mixed = LanguageModelConfig(path=lm.path, mix=(LanguageModelConfig(folder / "lm.bin", folder / "unigrams.txt"),))
    scorer = mixed.language_model()
    alone = lm.language_model()
    # pyctcdecode's MultiLanguageModel: the mean of the two scores, word by word.
    s_mixed, _ = scorer.score(scorer.get_start_state(), "weather")
    s_alone, _ = alone.score(alone.get_start_state(), "weather")
    g = LanguageModelConfig(folder / "lm.bin", folder / "unigrams.txt").language_model()
    s_general, _ = g.score(g.get_start_state(), "weather")
    assert s_mixed == pytest.approx((s_alone + s_general) / 2)
    assert s_general > s_alone  # a word the domain LM has never seen


def test_spaces_in_pauses_cost_nothing_with_the_lm(lm):
    """A model that emits the space token in pauses: repeated and final spaces end no word."""
    dec = BeamDecoder(VOCAB, FS, NO_ENDPOINT, beam=BeamConfig(beam_width=8), lm=lm)
    rng = np.random.default_rng(4)
    plain = noisy_logits("i lost my card", rng, noise=0.5)
    spaced = noisy_logits(" i lost  my card  ", rng, noise=0.5)
    for logits in (plain, spaced):
        (final,) = [e for e in stream(dec, logits, rng) if isinstance(e, Final)]
        assert final.text == "i lost my card"
    score = {name: dec.reference.decode_beams(lp, beam_width=8)[0] for name, lp in (("plain", plain), ("spaced", spaced))}
    assert score["spaced"][0] == "i lost my card"
    # Same words, same LM score: the acoustic part is all that differs.
    lm_part = {k: v[4] - v[3] for k, v in score.items()}
    assert lm_part["spaced"] == pytest.approx(lm_part["plain"], abs=1e-6)
