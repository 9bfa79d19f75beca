"""The generated-calls bench's scripts and its turn alignment (bench.calls), without audio."""

from __future__ import annotations

import random

import pytest

from bench.calls import Turn, scripts, turn_texts
from models.intent_train import banking77_split, load_banking77
from models.redaction_eval import number_exchange
from operators.redaction import luhn_valid, spoken_digits
from operators.spoken_form import normalize_text
from stream.events import Final


def test_a_spoken_number_exchange_reads_back_as_its_number():
    rng = random.Random(3)
    for _ in range(50):
        ask, answer, card = number_exchange(rng, "card")
        assert len(card) == 16 and luhn_valid(card) and ask
        assert "".join(spoken_digits(answer)) == card, answer
        _, answer, phone = number_exchange(rng, "phone")
        assert len(phone) == 10 and "".join(spoken_digits(answer)) == phone, answer
    with pytest.raises(ValueError, match="card or phone"):
        number_exchange(rng, "ssn")


def test_each_call_asks_a_different_dev_question_then_reads_two_numbers():
    texts, labels = load_banking77()
    _, dev = banking77_split(labels)
    dev_texts = {texts[i]: labels[i] for i in dev}
    calls = scripts(12, seed=1)
    assert [t.kind for t in calls[0].turns] == ["greeting", "question", "ask", "card", "ask", "phone", "closing"]
    questions = [t.text for c in calls for t in c.turns if t.kind == "question"]
    assert len(set(questions)) == 12
    for call, question in zip(calls, questions):
        assert dev_texts[question] == call.intent
        said = {t.kind: "".join(spoken_digits(normalize_text(t.text))) for t in call.turns}
        assert said["card"] == call.card and said["phone"] == call.phone
    assert scripts(12, seed=1) == calls and scripts(5, seed=1) == calls[:5]


def _final(text: str, start: float, end: float, channel: str = "customer") -> Final:
    return Final("call", channel, f"call/{channel}/{start}", 0, text, start=start, end=end)


def test_finals_go_to_the_turn_they_overlap_most():
    turns = [Turn("agent", "how can i help", "greeting"), Turn("customer", "my card is lost", "question"),
             Turn("customer", "four one", "card")]
    spans = [(0.5, 1.5), (2.4, 4.0), (4.9, 6.0)]
    finals = [
        _final("my card", 2.3, 3.1),
        _final("is lost", 3.1, 4.6),  # runs into the gap after its turn
        _final("how can i help", 0.5, 1.5, "agent"),  # another channel: not the customer's
        _final("four one", 4.8, 6.5),
        _final("", 6.6, 6.8),
        _final("uh", 8.0, 8.2),  # after every turn: the nearest
    ]
    assert turn_texts(finals, spans, turns) == ["", "my card is lost", "four one uh"]
    assert turn_texts(finals, spans, turns, channel="agent") == ["how can i help", "", ""]
