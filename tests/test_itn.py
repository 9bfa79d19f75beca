"""Number formatting of finals."""

import pytest

from operators.itn import format_final, format_words
from stream.events import Final, Word


def _words(text):
    return tuple(Word(w, i * 0.5, i * 0.5 + 0.4, 0.9 - 0.01 * i) for i, w in enumerate(text.split()))


@pytest.mark.parametrize(
    "spoken,formatted",
    [
        ("four one one one one one one one one one one one one one one one", "4111111111111111"),
        ("my card is forty one eleven eleven eleven", "my card is 41111111"),
        ("twenty five dollars", "$25"),
        ("twenty five dollars and forty cents please", "$25.40 please"),
        ("two hundred and five", "205"),
        ("one thousand two hundred thirty four", "1234"),
        ("ten percent", "10%"),
        ("nineteen eighty four", "1984"),
        ("i need one more thing", "i need one more thing"),
        ("call five five five oh one two three", "call 5550123"),
        ("hello there", "hello there"),
        ("zero", "zero"),
    ],
)
def test_spoken_numbers_become_digits(spoken, formatted):
    assert " ".join(w.text for w in format_words(_words(spoken))) == formatted


def test_merged_words_keep_timings_and_lowest_confidence():
    words = _words("pay twenty five dollars now")
    out = format_words(words)
    assert [w.text for w in out] == ["pay", "$25", "now"]
    assert out[1].start == words[1].start and out[1].end == words[3].end
    assert out[1].confidence == min(w.confidence for w in words[1:4])


def test_format_final_updates_text_and_words():
    f = Final("s", "mono", "s/mono/0", 0, "four one one one", _words("four one one one"))
    g = format_final(f)
    assert g.text == "4111" and len(g.words) == 1 and g.utterance_id == f.utterance_id
