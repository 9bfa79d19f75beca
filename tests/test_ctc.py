"""Greedy CTC decoding and endpointing on hand-made posteriors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.ctc import EndpointConfig, GreedyDecoder
from stream.events import Final, Partial

VOCAB = ("", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
FS = 0.04


def _frames(spec: str, peak: float = 0.9) -> np.ndarray:
    """One frame per character of ``spec``; '_' is blank."""
    lp = np.full((len(spec), len(VOCAB)), np.log((1 - peak) / (len(VOCAB) - 1)), np.float32)
    for i, ch in enumerate(spec):
        lp[i, 0 if ch == "_" else VOCAB.index(ch)] = np.log(peak)
    return lp


def test_words_timings_and_final_at_trailing_silence():
    dec = GreedyDecoder(VOCAB, FS, EndpointConfig(silence_after_speech_s=0.4))
    st_ = dec.new_state("s", "mono")
    events = dec.feed(st_, _frames("__hh_i__ _yyo_u" + "_" * 10))
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1
    f = finals[0]
    assert f.text == "hi you" and f.utterance_id == "s/mono/0" and f.endpoint == "silence"
    assert [w.text for w in f.words] == ["hi", "you"]
    assert f.words[0].start == pytest.approx(2 * FS) and f.words[0].end == pytest.approx(6 * FS)
    assert f.words[1].start == pytest.approx(10 * FS)
    assert all(0 < w.confidence <= 1 for w in f.words)
    assert dec.flush(st_) == []


def test_repeated_letters_need_a_blank_and_utterances_count_up():
    dec = GreedyDecoder(VOCAB, FS, EndpointConfig(silence_after_speech_s=0.2))
    st_ = dec.new_state("s", "agent")
    finals = [e for e in dec.feed(st_, _frames("too_o______to______")) if isinstance(e, Final)]
    assert [f.text for f in finals] == ["too", "to"]
    assert [f.utterance_index for f in finals] == [0, 1]


def test_max_length_ends_at_a_silent_frame_and_flush_emits_the_rest():
    dec = GreedyDecoder(VOCAB, FS, EndpointConfig(silence_after_speech_s=10, max_utterance_s=0.4))
    st_ = dec.new_state("s", "mono")
    events = dec.feed(st_, _frames("aaaaaaaaaaaaa_b"))
    finals = [e for e in events if isinstance(e, Final)]
    assert [(f.text, f.endpoint) for f in finals] == [("a", "max_length")]
    tail = dec.flush(st_)
    assert [(f.text, f.endpoint) for f in tail] == [("b", "end_of_stream")]


def test_bad_shapes_raise():
    dec = GreedyDecoder(VOCAB, FS)
    with pytest.raises(ValueError, match="expected log-probs of shape"):
        dec.feed(dec.new_state("s", "mono"), np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="CTC blank"):
        GreedyDecoder(("a", ""), FS)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list("_ abc")), min_size=1, max_size=120), st.integers(1, 9))
def test_stable_words_never_change_and_each_utterance_has_one_final(spec, chunk):
    dec = GreedyDecoder(VOCAB, FS, EndpointConfig(silence_after_speech_s=0.2))
    st_ = dec.new_state("s", "mono")
    lp = _frames("".join(spec))
    events = []
    for i in range(0, len(lp), chunk):
        events += dec.feed(st_, lp[i : i + chunk])
    events += dec.flush(st_)
    stable: dict[int, list[str]] = {}
    finals: dict[int, int] = {}
    for e in events:
        if isinstance(e, Partial):
            words = [w.text for w in e.words]
            prev = stable.get(e.utterance_index, [])
            assert words[: len(prev)] == prev
            stable[e.utterance_index] = words[: e.stable]
        elif isinstance(e, Final):
            finals[e.utterance_index] = finals.get(e.utterance_index, 0) + 1
            assert [w.text for w in e.words][: len(stable.get(e.utterance_index, []))] == stable.get(
                e.utterance_index, [])
    assert all(n == 1 for n in finals.values())
    assert sorted(finals) == list(range(len(finals)))
