"""The enrichment agents' per-call logic (operators.calls), without Kafka or Faust."""

from __future__ import annotations

import pytest

from operators.calls import CallTracker
from operators.enrich import default_enricher
from stream.events import EndOfStream, Final, Partial, Word


def _final(call: str, index: int, text: str, channel: str = "customer") -> Final:
    words = tuple(Word(w, 0.3 * i, 0.3 * (i + 1), 0.9) for i, w in enumerate(text.split()))
    return Final(call, channel, f"{call}/{channel}/{index}", index, text, words, start=0.0, end=words[-1].end)


@pytest.fixture(scope="module")
def tracker() -> CallTracker:
    return CallTracker(default_enricher, seen_ids=4, open_calls=2)


def test_finals_are_enriched_once_and_an_ended_call_is_forgotten(tracker):
    out = tracker.handle("c1", _final("c1", 0, "i lost my card and need to block it"))
    assert out is not None and out.transcript.utterance_id == "c1/customer/0" and out.intent is not None
    assert tracker.recent("c1") == ["c1/customer/0"]
    assert tracker.handle("c1", _final("c1", 0, "i lost my card and need to block it")) is None
    assert tracker.handle("c1", Partial("c1", "customer", "c1/customer/1", 1, "hello")) is None
    assert tracker.handle("c1", EndOfStream("c1")) is None
    assert tracker.recent("c1") == []


def test_recent_ids_are_bounded_and_a_card_split_across_finals_stays_redacted(tracker):
    first = tracker.handle("c2", _final("c2", 0, "my card is four one one one one one one one"))
    second = tracker.handle("c2", _final("c2", 1, "one one one one one one one one"))
    assert "one" not in first.redacted_text and "one" not in second.redacted_text
    for i in range(2, 8):
        tracker.handle("c2", _final("c2", i, "thank you"))
    assert tracker.recent("c2") == [f"c2/customer/{i}" for i in range(4, 8)]


def test_the_least_recent_calls_are_forgotten_past_open_calls(tracker):
    for call in ("c5", "c6", "c7"):
        tracker.handle(call, _final(call, 0, "what is my balance"))
    assert tracker.recent("c5") == [] and tracker.recent("c7") == ["c7/customer/0"]


def test_a_final_already_on_the_enriched_topic_is_remembered_but_not_sent_again():
    tracker = CallTracker(default_enricher, seen_ids=4)
    tracker.published = {"c3/customer/0"}
    assert tracker.handle("c3", _final("c3", 0, "my card number is four one one one one one")) is None
    assert tracker.recent("c3") == ["c3/customer/0"]
    # The redaction memory saw the digits of the final it did not send: the rest of the number is masked.
    out = tracker.handle("c3", _final("c3", 1, "one two three four"))
    assert out is not None and "two" not in out.redacted_text
    # Without that memory, four digits alone are not a card number.
    alone = CallTracker(default_enricher).handle("c4", _final("c4", 1, "one two three four"))
    assert "two" in alone.redacted_text
