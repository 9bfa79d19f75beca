"""Spoken form of written text (what the second pass's Whisper writes, mapped to the model alphabet)."""

from operators.spoken_form import normalize_text


def test_grouped_card_and_phone_numbers_are_read_digit_by_digit():
    assert normalize_text("4111 1111 1111 1111") == " ".join(["four"] + ["one"] * 15)
    assert normalize_text("call 555-123-4567") == "call five five five one two three four five six seven"
    assert normalize_text("in 1999 and 2005") == "in nineteen ninety nine and two thousand five"


def test_numbers_too_large_to_spell_never_raise():
    assert normalize_text("7,000,000,000,000,000,000 dollars").split()[:3] == ["seven", "zero", "zero"]
    assert normalize_text("$9,999,999,999,999,999.50").startswith("nine nine nine")
    assert normalize_text("12345678901234567890th").startswith("one two three")
