"""Written text to its spoken form in the acoustic alphabet: "$25.40 at 5pm" -> words.

Training labels, LM text and the second pass's finals (Whisper writes digits,
symbols and punctuation) all pass through ``normalize_text``, so the words a
final holds are spelled the way the CTC model and the language model spell
them. Pure functions, no state.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["amount_words", "digits_to_words", "normalize_text", "number_to_words", "ordinal_to_words",
           "year_to_words", "ONES"]

ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def number_to_words(n: int) -> str:
    """Spell an integer in American English words, without "and".

    >>> number_to_words(2024)
    'two thousand twenty four'
    >>> number_to_words(-105)
    'minus one hundred five'

    Raises ValueError for magnitudes of a quadrillion or more.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**15:
        raise ValueError(f"{n} is too large to spell")
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (f" {ONES[unit]}" if unit else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{ONES[hundreds]} hundred" + (f" {number_to_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            return f"{number_to_words(head)} {name}" + (f" {number_to_words(rest)}" if rest else "")
    raise AssertionError("unreachable: every n >= 1000 has a scale")


def ordinal_to_words(n: int) -> str:
    """Spell a non-negative integer as an ordinal: 3 -> "third", 21 -> "twenty first"."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _IRREGULAR_ORDINALS:
        words[-1] = _IRREGULAR_ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_to_words(year: int) -> str:
    """Spell a year the way it is spoken: 1985 -> "nineteen eighty five", 2005 -> "two thousand five".

    Years outside 1100..2099 (and 2000..2009) fall back to the cardinal.
    """
    if not (1100 <= year <= 2099) or 2000 <= year <= 2009:
        return number_to_words(year)
    high, low = divmod(year, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    if low < 10:
        return f"{number_to_words(high)} oh {ONES[low]}"
    return f"{number_to_words(high)} {number_to_words(low)}"


def digits_to_words(digits: str, zero: str = "zero") -> str:
    return " ".join(zero if d == "0" else ONES[int(d)] for d in digits)


def _pluralize_last(words: str) -> str:
    """ "ninety" -> "nineties", "nineteen hundred" -> "nineteen hundreds" (for decades)."""
    head, _, last = words.rpartition(" ")
    last = last[:-1] + "ies" if last.endswith("y") else last + "s"
    return f"{head} {last}".strip()


# ---------------------------------------------------------------------------
# Text normalisation
# ---------------------------------------------------------------------------

# Short upper-case tokens are spelled letter by letter (ATM -> "a t m"), except
# these ordinary words, which appear in capitals for emphasis ("I need HELP").
_COMMON_WORDS = frozenset(
    """a about all am an and any are as ask at be but by can cant did do does dont for from get go got
    had has have he her here hi him his how i if in is it its just let like me more my new no not now
    of off oh ok on one or our out own please put say see set she so some song stop tell than that the
    them then they this time to today too two up was we what when who why will with yes you your
    help light want could play""".split()
)
# Acronyms that are said as words, not letters.
_WORD_ACRONYMS = {
    "PIN": "pin",
    "SEPA": "sepa",
    "IMAX": "imax",
    "NASA": "nasa",
    "TODO": "to do",
    "OK": "okay",
    "II": "two",
    "III": "three",
}
_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "dr": "doctor",
    "vs": "versus",
    "etc": "et cetera",
}
_CURRENCIES = {"$": ("dollar", "cent"), "€": ("euro", "cent"), "£": ("pound", "penny")}
_AMOUNT_SCALES = {
    "k": "thousand",
    "thousand": "thousand",
    "m": "million",
    "million": "million",
    "bn": "billion",
    "billion": "billion",
}

_RE_CURRENCY = re.compile(
    r"([$€£])\s?(\d[\d,]*)(?:\.(\d+))?(?:\s?(k|m|bn|thousand|million|billion)\b)?"
    r"|(\d[\d,]*)(?:\.(\d{1,2}))?\s?([$€£])",
    re.IGNORECASE,
)
_RE_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?%")
_RE_CLOCK = re.compile(r"\b(\d{1,2}):(\d{2})(?:\s?([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_RE_AMPM = re.compile(r"\b(\d{1,2})\s?([ap])\.?\s?m\b\.?", re.IGNORECASE)
_RE_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_RE_DECADE = re.compile(r"\b(\d{0,2}\d0)'?s\b")
_RE_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
_RE_GROUPED = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_RE_MIXED = re.compile(r"\b(?=[a-z]*\d)(?=\d*[a-z])[a-z\d]+\b", re.IGNORECASE)
_RE_NUMBER = re.compile(r"\d+")
_RE_CAPS = re.compile(r"\b[A-Z]{2,4}\b")
# Numbers too long to spell as one cardinal (a quadrillion or more, in any grouping): a model
# looping on "7,000,000,..." or a run of card digits. They are read digit by digit.
_RE_HUGE = re.compile(r"\d(?:,?\d){15,}")
# Three or more groups of 2-4 digits: a card, phone or account number read out ("4111 1111 1111
# 1111", "555-123-4567"), which a caller says digit by digit, not as "eleven eleven".
_RE_DIGIT_GROUPS = re.compile(r"(?<![\d,.$])\d{2,4}(?:[ -]\d{2,4}){2,}(?![\d%]|[.,]\d)")
# Digits joined by hyphens or dots, as Whisper writes a number it heard read out: "4-9-4-568-2417",
# "81093-223", "92.07.69.84.56". Three or more groups, or seven or more digits, are a number said
# digit by digit; "10-15" (a range), "2019-2020" (years) and "2.5" (a decimal) are not.
_RE_DIGIT_RUN = re.compile(r"(?<![\d,.$])\d+(?:(?P<sep>[-.])\d+)(?:(?P=sep)\d+)*(?![\d%]|[.,]\d)")


def amount_words(whole: str, frac: str | None, symbol: str, scale: str | None) -> str:
    unit, sub = _CURRENCIES[symbol]
    value = int(whole.replace(",", ""))
    if scale:
        number = number_to_words(value) + (f" point {digits_to_words(frac)}" if frac else "")
        return f"{number} {_AMOUNT_SCALES[scale.lower()]} {unit}s"
    cents = int(frac[:2].ljust(2, "0")) if frac else 0
    parts = []
    if value or not cents:
        parts.append(f"{number_to_words(value)} {unit}" + ("" if value == 1 else "s"))
    if cents:
        subunit = sub if cents == 1 else ("pence" if sub == "penny" else sub + "s")
        parts.append(f"{number_to_words(cents)} {subunit}")
    return " and ".join(parts)


def _currency(m: re.Match[str]) -> str:
    if m.group(1):
        return f" {amount_words(m.group(2), m.group(3), m.group(1), m.group(4))} "
    return f" {amount_words(m.group(5), m.group(6), m.group(7), None)} "


def _clock(m: re.Match[str]) -> str:
    hour, minute, meridiem = int(m.group(1)), int(m.group(2)), m.group(3)
    if minute == 0:
        text = number_to_words(hour) + ("" if meridiem else " o'clock")
    elif minute < 10:
        text = f"{number_to_words(hour)} oh {ONES[minute]}"
    else:
        text = f"{number_to_words(hour)} {number_to_words(minute)}"
    return f" {text} {meridiem.lower()} m " if meridiem else f" {text} "


def _plain_number(m: re.Match[str]) -> str:
    digits = m.group(0)
    # Leading zeros and long strings are codes or account numbers: read digit by digit.
    if len(digits) > 1 and (digits[0] == "0" or len(digits) >= 5):
        return f" {digits_to_words(digits)} "
    value = int(digits)
    if len(digits) == 4 and (1100 <= value <= 1999 or 2010 <= value <= 2099):
        return f" {year_to_words(value)} "
    return f" {number_to_words(value)} "


def _digit_run(m: re.Match[str]) -> str:
    groups = m.group(0).split(m.group("sep"))
    digits = "".join(groups)
    years = all(len(g) == 4 and 1100 <= int(g) <= 2099 for g in groups)  # "2019-2020"
    if len(groups) >= 3 or (len(digits) >= 7 and not years):
        return f" {digits_to_words(digits)} "
    return m.group(0)


def _decade(m: re.Match[str]) -> str:
    """ "90s" -> "nineties", "1990's" -> "nineteen nineties"."""
    value = int(m.group(1))
    return f" {_pluralize_last(year_to_words(value) if value >= 1000 else number_to_words(value))} "


def _mixed_token(m: re.Match[str]) -> str:
    """Letters+digits tokens such as "w2", "ab123", "401k": spell short letter runs, read digits."""
    out = []
    for run in re.findall(r"\d+|[a-z]+", m.group(0), re.IGNORECASE):
        if run.isdigit():
            out.append(digits_to_words(run))
        elif len(run) <= 3:
            out.append(" ".join(run.lower()))
        else:
            out.append(run.lower())
    return f" {' '.join(out)} "


def _caps_token(m: re.Match[str]) -> str:
    token = m.group(0)
    if token in _WORD_ACRONYMS:
        return _WORD_ACRONYMS[token]
    if token.lower() in _COMMON_WORDS:
        return token.lower()
    return " ".join(token.lower())


def normalize_text(s: str) -> str:
    """Map free text to the model alphabet: lowercase a-z, apostrophe and single spaces.

    Numbers are spelled out (amounts, percentages, clock times, ordinals,
    decades, decimals, years; long digit strings digit by digit), the symbols
    $ € £ % & @ become words, short upper-case acronyms are spelled as
    letters ("ATM" -> "a t m"), accents are stripped and all other
    punctuation is dropped.  Returns "" when nothing is left.

    >>> normalize_text("I paid $25.40 for 2 cards at 5pm!")
    'i paid twenty five dollars and forty cents for two cards at five p m'
    """
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    # The mostly-capitals test stops shouted sentences being spelled out letter by letter.
    words = re.findall(r"[A-Za-z]+", s)
    if words and sum(w.isupper() and len(w) > 1 for w in words) * 2 <= len(words):
        s = _RE_CAPS.sub(_caps_token, s)
    s = _RE_HUGE.sub(lambda m: f" {digits_to_words(m.group(0).replace(',', ''))} ", s)
    s = _RE_DIGIT_GROUPS.sub(lambda m: f" {digits_to_words(re.sub('[ -]', '', m.group(0)))} ", s)
    s = _RE_DIGIT_RUN.sub(_digit_run, s)
    s = _RE_CURRENCY.sub(_currency, s)
    s = _RE_PERCENT.sub(lambda m: f" {_number_or_decimal(m.group(1))} percent ", s)
    s = _RE_CLOCK.sub(_clock, s)
    s = _RE_AMPM.sub(lambda m: f" {number_to_words(int(m.group(1)))} {m.group(2).lower()} m ", s)
    s = _RE_ORDINAL.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", s)
    s = _RE_DECADE.sub(_decade, s)
    s = _RE_DECIMAL.sub(lambda m: f" {_number_or_decimal(m.group(0))} ", s)
    s = _RE_GROUPED.sub(lambda m: f" {number_to_words(int(m.group(0).replace(',', '')))} ", s)
    s = _RE_MIXED.sub(_mixed_token, s)
    s = _RE_NUMBER.sub(_plain_number, s)
    s = s.lower().replace("&", " and ").replace("@", " at ").replace("%", " percent ")
    s = re.sub(r"[^a-z' ]", " ", s)
    # Keep apostrophes only inside words ("don't"); quotes around words go.
    s = re.sub(r"(?<![a-z])'|'(?![a-z])", "", s)
    return " ".join(_ABBREVIATIONS.get(w, w) for w in s.split())


def _number_or_decimal(text: str) -> str:
    whole, _, frac = text.partition(".")
    words = number_to_words(int(whole))
    return f"{words} point {digits_to_words(frac)}" if frac else words

