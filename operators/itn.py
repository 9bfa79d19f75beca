"""Inverse text normalisation of finals: spoken numbers to digits, keeping word timings.

"four one one one" -> "4111", "forty one eleven" -> "4111", "twenty five dollars"
-> "$25", "two hundred and five" -> "205", "ten percent" -> "10%". A lone small
number ("one more thing") stays a word. Merged words keep the start of the
first and the end of the last, and the lowest confidence, so redaction can mute
the audio of a formatted number.

No maintained Python ITN library works offline without a grammar compiler
(NeMo's needs pynini and its FST build), so the rules are written here.
"""

from __future__ import annotations

from dataclasses import replace

from stream.events import Final, Word

__all__ = ["DIGITS", "format_final", "format_words"]

# Spoken digits, "oh" among them, and their values.
DIGITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine".split())} | {"oh": 0}
_TEENS = {w: i + 10 for i, w in enumerate(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: (i + 2) * 10 for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = set(DIGITS) | set(_TEENS) | set(_TENS) | set(_SCALES) | {"hundred"}


def _cardinal(tokens: list[str]) -> int | None:
    """Parse a well-formed cardinal ("two hundred and five thousand ten"); None if not one."""
    total = current = 0
    last = ""  # class of the previous token: digit, teen, tens, hundred, scale
    for tok in tokens:
        if tok == "and":
            if last != "hundred":
                return None
            continue
        if tok in DIGITS and tok != "oh":
            if last in ("digit", "teen"):
                return None
            current += DIGITS[tok]
            last = "digit"
        elif tok in _TEENS:
            if last in ("digit", "teen", "tens"):
                return None
            current += _TEENS[tok]
            last = "teen"
        elif tok in _TENS:
            if last in ("digit", "teen", "tens"):
                return None
            current += _TENS[tok]
            last = "tens"
        elif tok == "hundred":
            if last != "digit" or current % 100 == 0 or current >= 100:
                return None
            current *= 100
            last = "hundred"
        elif tok in _SCALES:
            if current == 0:
                return None
            total += current * _SCALES[tok]
            current = 0
            last = "scale"
        else:
            return None
    return total + current


def _groups(tokens: list[str]) -> str | None:
    """Digit strings said in groups: "forty one eleven", "four one one one", "nineteen eighty four"."""
    out, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in DIGITS:
            out.append(str(DIGITS[tok]))
            i += 1
        elif tok in _TEENS:
            out.append(str(_TEENS[tok]))
            i += 1
        elif tok in _TENS:
            if i + 1 < len(tokens) and tokens[i + 1] in DIGITS and tokens[i + 1] not in ("zero", "oh"):
                out.append(str(_TENS[tok] + DIGITS[tokens[i + 1]]))
                i += 2
            else:
                out.append(str(_TENS[tok]))
                i += 1
        elif tok == "hundred" and out:
            out.append("00")
            i += 1
        else:
            return None
    return "".join(out)


def _to_text(tokens: list[str]) -> str | None:
    if all(t in DIGITS for t in tokens):
        return "".join(str(DIGITS[t]) for t in tokens)
    value = _cardinal(tokens)
    if value is not None:
        return str(value)
    return _groups([t for t in tokens if t != "and"])


def _merge(words: list[Word], text: str) -> Word:
    return Word(text, words[0].start, words[-1].end, min(w.confidence for w in words))


def format_words(words: tuple[Word, ...]) -> tuple[Word, ...]:
    """Words with spoken numbers (and $, cents, %) turned into formatted tokens."""
    out: list[Word] = []
    i, n = 0, len(words)
    while i < n:
        if words[i].text not in _NUMBER_WORDS or words[i].text == "oh":
            out.append(words[i])
            i += 1
            continue
        j = i
        while j < n and (words[j].text in _NUMBER_WORDS or (
                words[j].text == "and" and j + 1 < n and words[j + 1].text in _NUMBER_WORDS and j > i
                and words[j - 1].text == "hundred")):
            j += 1
        span = words[i:j]
        text = _to_text([w.text for w in span])
        unit = words[j].text if j < n else ""
        if text is None:
            out.extend(span)
            i = j
            continue
        if unit in ("dollar", "dollars"):
            cents = ""
            k = j + 1
            if k < n and words[k].text == "and":
                m = k + 1
                while m < n and words[m].text in _NUMBER_WORDS:
                    m += 1
                if m < n and m > k + 1 and words[m].text in ("cent", "cents"):
                    c = _to_text([w.text for w in words[k + 1 : m]])
                    if c is not None and int(c) < 100:
                        cents, j = f".{int(c):02d}", m
            out.append(_merge(list(words[i : j + 1]), f"${text}{cents}"))
            i = j + 1
        elif unit == "percent":
            out.append(_merge(list(words[i : j + 1]), f"{text}%"))
            i = j + 1
        elif len(span) == 1 and span[0].text in DIGITS:
            out.append(span[0])  # a lone "one" stays a word
            i = j
        else:
            out.append(_merge(list(span), text))
            i = j
    return tuple(out)


def format_final(final: Final) -> Final:
    """The final with formatted numbers in ``text`` and ``words``."""
    words = format_words(final.words)
    return replace(final, words=words, text=" ".join(w.text for w in words))
