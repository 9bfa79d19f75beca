"""Redaction of partials and finals as they leave the recogniser (operators.redaction.StreamRedactor)."""

from __future__ import annotations

import pytest

from operators.redaction import StreamRedactor, check_modes
from stream.events import Final, Hypothesis, Partial, Word

CARD = "four one one one one one one one one one one one one one one one"


def _words(text: str, start: float = 0.0, step: float = 0.3) -> tuple[Word, ...]:
    return tuple(Word(t, round(start + i * step, 3), round(start + (i + 1) * step, 3), 0.9)
                 for i, t in enumerate(text.split()))


def _final(text: str, channel: str = "customer", start: float = 0.0, index: int = 0) -> Final:
    words = _words(text, start)
    return Final("call", channel, f"call/{channel}/{index}", index, text, words,
                 nbest=(Hypothesis(text, -1.0),), start=start, end=words[-1].end)


def _partial(text: str, channel: str = "customer", start: float = 0.0, stable: int = 0) -> Partial:
    words = _words(text, start)
    return Partial("call", channel, f"call/{channel}/0", 0, text, words, stable=stable, start=start,
                   end=words[-1].end)


def test_a_final_is_masked_everywhere_it_carries_words_and_says_where_to_mute():
    r = StreamRedactor()
    state = r.new_state()
    out = r.final(state, _final("my card is " + CARD + " thanks"))
    assert out.text.split()[:3] == ["my", "card", "is"] and out.text.split()[-1] == "thanks"
    assert "one" not in out.text and all("one" not in w.text for w in out.words)
    assert all("one" not in h.text for h in out.nbest)
    [span] = out.redactions
    assert (span.kind, span.first_word, span.last_word) == ("card", 3, 18)
    assert (span.start, span.end) == (out.words[3].start, out.words[18].end)


def test_partials_never_show_a_card_and_number_words_are_never_stable():
    r = StreamRedactor()
    state = r.new_state()
    shown = []
    digits = CARD.split()
    for n in range(1, len(digits) + 1):
        p = r.partial(state, _partial("it is " + " ".join(digits[:n]), stable=2 + n))
        shown.append(p)
        assert p.stable <= 2
        # Never more than three digits of the card in a row on screen: a partial's trailing
        # digits may be the start of a card.
        assert "one one one one" not in p.text, p.text
    assert shown[-1].text.startswith("it is ####")


def test_the_agent_asking_for_the_card_opens_a_capture_context_for_the_customer():
    r = StreamRedactor()
    state = r.new_state()
    r.final(state, _final("can you read me the card number please", channel="agent"))
    # Four digits alone would pass outside a capture context.
    out = r.final(state, _final("four one one one and then two two two two", start=4.0))
    assert [s.kind for s in out.redactions] == ["card", "card"]
    r.final(state, _final("thanks that is all i wanted to ask you about today have a nice day", start=20.0, index=1))
    later = r.final(state, _final("four one one one", start=60.0, index=2))
    assert later.redactions == ()


def test_a_card_split_across_finals_is_masked_in_both():
    r = StreamRedactor()
    state = r.new_state()
    first = r.final(state, _final("it is four one one one one one one one"))
    second = r.final(state, _final("one one one one one one one one", start=4.0, index=1))
    assert "one" not in first.text and "one" not in second.text


def test_modes_choose_what_is_masked():
    r = StreamRedactor()
    text = "call me on five five five one two three four or write to bob at example dot com"
    pci_only = r.final(r.new_state(("pci",)), _final(text))
    assert pci_only.redactions == ()
    phone = r.final(r.new_state(("phone",)), _final(text))
    assert [s.kind for s in phone.redactions] == ["phone"]
    email = r.final(r.new_state(("email",)), _final(text))
    assert [s.kind for s in email.redactions] == ["email"]
    numbers = r.final(r.new_state(("numbers",)), _final("i need two tickets for table nine"))
    assert [s.kind for s in numbers.redactions] == ["number", "number"]


def test_unknown_modes_are_refused():
    assert check_modes(["pci", "phone", "pci"]) == ("pci", "phone")
    with pytest.raises(ValueError, match="unknown redaction mode cards"):
        check_modes(["cards"])


@pytest.fixture(scope="module", params=[0.0, 1.0], ids=["ctc-partials", "second-pass-partials"])
def sample_call_events(request):
    """Every event of the bundled sample call (the customer reads a card number), redacted and raw;
    partials from the CTC search, or rewritten by the second pass every second."""
    import soundfile as sf

    from models.runtime import ASSETS
    from operators.audio import encode_audio
    from stream.app import DecodingConfig, build_pipeline
    from stream.events import StreamConfig

    audio, rate = sf.read(ASSETS / "sample_call.wav", dtype="float32", always_2d=True)
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=request.param), enrich=True)
    out = {}
    for name, redact in (("redacted", StreamConfig().redact), ("raw", ())):
        state = pipeline.create_stream("call", StreamConfig(sample_rate=rate, encoding="pcm16", channels=2,
                                                            redact=redact))
        events = []
        for i in range(0, audio.shape[0], rate // 10):
            pipeline.accept_bytes(state, encode_audio(audio[i : i + rate // 10], "pcm16"))
            events += pipeline.decode_streams([state])
        out[name] = events + pipeline.finish(state)
    return out


def test_no_event_of_the_sample_call_shows_its_card_number(sample_call_events):
    from models.redaction_eval import event_texts, leaks

    secret = "4111111111111111"

    def texts(events):
        return (t for ev in events for t in event_texts(ev))

    # The recogniser does hear the number: without redaction it goes out.
    assert any(leaks(t, secret) for t in texts(sample_call_events["raw"]))
    assert not [t for t in texts(sample_call_events["redacted"]) if leaks(t, secret)]
    finals = [ev for ev in sample_call_events["redacted"] if isinstance(ev, Final) and ev.redactions]
    assert finals and all(s.kind == "card" and s.end > s.start for f in finals for s in f.redactions)


def test_a_partial_ending_inside_a_number_word_counts_it_as_a_digit():
    r = StreamRedactor()
    p = r.partial(r.new_state(), _partial("fifty two eighty one forty six fift"))
    assert p.text == "##### ### ###### ### ##### ### ####"
    p = r.partial(r.new_state(), _partial("it is nine five eight six eight eight zer"))
    assert p.text.startswith("it is #### ")
