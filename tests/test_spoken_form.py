"""Spoken form of written text (what the second pass's Whisper writes, mapped to the model alphabet)."""

from operators.spoken_form import normalize_text


def test_grouped_card_and_phone_numbers_are_read_digit_by_digit():
    assert normalize_text("4111 1111 1111 1111") == " ".join(["four"] + ["one"] * 15)
    assert normalize_text("call 555-123-4567") == "call five five five one two three four five six seven"
    assert normalize_text("It's 4111 1111 1111 1111.") == " ".join(["it's", "four"] + ["one"] * 15)
    assert normalize_text("in 1999 and 2005") == "in nineteen ninety nine and two thousand five"


def test_numbers_whisper_writes_with_hyphens_or_dots_are_read_digit_by_digit():
    assert normalize_text("Call me at 4-9-4-568-2417.") == "call me at four nine four five six eight two four one seven"
    assert normalize_text("It's 81093-223.") == "it's eight one zero nine three two two three"
    assert normalize_text("on 92.07.69.84") == "on nine two zero seven six nine eight four"
    assert normalize_text("call 555-1234") == "call five five five one two three four"
    # Ranges, years and decimals keep their words.
    assert normalize_text("10-15 days") == "ten fifteen days"
    assert normalize_text("from 2019-2020") == "from twenty nineteen twenty twenty"
    assert normalize_text("2.5 dollars, not 12.5.") == "two point five dollars not twelve point five"


def test_numbers_too_large_to_spell_never_raise():
    assert normalize_text("7,000,000,000,000,000,000 dollars").split()[:3] == ["seven", "zero", "zero"]
    assert normalize_text("$9,999,999,999,999,999.50").startswith("nine nine nine")
    assert normalize_text("12345678901234567890th").startswith("one two three")
