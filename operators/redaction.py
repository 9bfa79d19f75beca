"""PII/PCI redaction of transcripts: cards, cvv, expiry, SSN, phone, email, date of birth.

Redaction reads the words of a final as ASR writes them (lowercase, numbers
spoken: "four one one one", "forty one eleven", "oh four twenty six") and as a
number formatter writes them ("4111-1111-1111-1111", "04/26",
"john.smith@gmail.com"). Both become one digit stream per run of number
words, in which every digit remembers the word it came from, so a match on
digits maps back to word indices and their times.

What is redacted, and when:

=========  ==================================================================
card       13-19 digits, first digit 2-6, Luhn-valid (leftmost, longest).
cvv        3-4 digits after a cvv keyword, or right after a card.
expiry     month + year (``0426``, ``04/2026``, "april twenty six") after an
           expiry keyword, or right after a card.
ssn        ``ddd-dd-dddd``, or 9 digits that are a valid SSN (area not 000,
           666 or 9xx; group and serial not zero).
phone      10 digits with area code 2-9, 11 digits starting with 1, or 7
           digits after a phone keyword.
email      ``local@domain.tld`` written, or spoken: words joined by
           "dot"/"underscore"/"dash", "at", labels joined by "dot", a known TLD.
dob        a date (month name or numbers, with year) after a birth keyword.
=========  ==================================================================

A digit run of ``prefix_digits`` or more that ends a final and is not
otherwise explained is redacted as ``card`` at once: it may be the first half
of a card whose rest comes in the next final, and a final cannot be
redacted after it has been emitted. ``RedactionState`` carries that tail
from one final to the next.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from stream.events import Final, Partial, RedactedSpan, StreamConfig, Word

__all__ = [
    "DEFAULT_MODES",
    "MODES",
    "RedactionConfig",
    "RedactionState",
    "StreamRedactionState",
    "StreamRedactor",
    "check_modes",
    "is_redacted",
    "luhn_valid",
    "mask_text",
    "redact",
    "spans_for_words",
    "spoken_digits",
]

_MARK = "#"  # a redacted word becomes one mark per letter


def is_redacted(word: str) -> bool:
    """Whether ``word`` is a redacted word's marks."""
    return bool(word) and not word.strip(_MARK)


def mask_text(words: Sequence[str], spans: Sequence[RedactedSpan]) -> str:
    """One output token per input word: PII words become ``#``s, profane words keep their first letter.

    Keeping one token per word keeps ``redacted_text.split()[i]`` aligned
    with ``words[i]`` and so with its timing.
    """
    out = list(words)
    for span in spans:
        for i in range(span.first_word, span.last_word + 1):
            w = words[i]
            out[i] = w[:1] + "*" * (len(w) - 1) if span.kind == "profanity" else _MARK * max(len(w), 1)
    return " ".join(out)



_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_REPEAT = {"double": 2, "triple": 3}
# Spoken separators and fillers that may sit inside a number without ending it.
# Words inside a number that do not end it: separators, hesitations, the articles a recogniser
# inserts between digits ("five six the one one"), and a "hundred" that no grouping explains
# (digits written as "seven hundred seven hundred oh").
_INSIDE = {"dash", "hyphen", "slash", "space", "uh", "um", "er", "ah", "hmm", "a", "the", "and", "hundred",
           "thousand"}  # fmt: skip
# Words that may open a final before the rest of a number begun in the previous one.
_LEAD_IN = {"uh", "um", "er", "ah", "hmm", "and", "then", "okay", "ok", "so"}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november december".split()
    )
}
_MONTHS.update({"jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9,
                "oct": 10, "nov": 11, "dec": 12})  # fmt: skip
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
    "thirtieth": 30,
}  # fmt: skip
_ORDINAL_RE = re.compile(r"^(\d{1,2})(st|nd|rd|th)$")
_FORMATTED = re.compile(r"^[+(]?\d[\d\-./()]*$")
_WRITTEN_DATE = re.compile(r"^\d{1,2}[/.-]\d{1,2}[/.-](\d{2}|\d{4})$")
_EMAIL_RE = re.compile(r"^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}$")
_TLDS = {"com", "net", "org", "edu", "gov", "io", "co", "us", "uk", "ca", "info", "biz", "me", "de", "fr", "ai"}
_EMAIL_JOIN = {"dot": ".", "period": ".", "underscore": "_", "dash": "-", "hyphen": "-"}
# Words that are never part of an e-mail's local part: "my email is john at ...".
_EMAIL_STOP = {
    "is", "my", "email", "e", "mail", "address", "it's", "its", "the", "a", "to", "me", "at", "and", "or",
    "send", "reach", "it", "was", "use", "you", "can", "i", "am", "please", "your", "of", "on", "in", "for",
}  # fmt: skip

_CVV_KEYS = ("cvv", "cvc", "cvv2", "cid", "security code", "verification code", "code on the back", "three digit code",
             "card code", "security number")  # fmt: skip
_EXPIRY_KEYS = ("expiry", "expires", "expiration", "expire", "exp", "valid through", "valid thru", "valid until",
                "good through", "good thru")  # fmt: skip
_PHONE_KEYS = ("phone", "number", "call", "reach me", "cell", "mobile", "telephone", "text me")
_DOB_KEYS = ("birth", "born", "dob", "d o b", "birthday", "birthdate")


@dataclass(frozen=True)
class RedactionConfig:
    """Redaction settings (distances are in words unless a field says seconds)."""

    keyword_window: int = 6  # a keyword counts for a number starting this many words after it
    card_window: int = 12  # cvv/expiry count as near a card within this many words after it
    prefix_digits: int = 6  # a trailing digit run this long is held as a possible card start
    long_run_digits: int = 7  # an unexplained run this long is a phone (up to 11 digits) or a card
    capture_digits: int = 4  # in a card-capture context, a run this long is redacted as a card
    capture_s: float = 30.0  # a card-capture context lasts this long after its last cue (stream time)


@dataclass
class RedactionState:
    """Per-call state: the digits that ended the previous final, and how far back a card was."""

    tail_digits: str = ""  # digits of the run that ended the previous final
    words_since_card: int | None = None  # words since the last card ended (None: no card yet)


@dataclass(frozen=True)
class _Run:
    """A run of number words: its digits and, for each digit, the index of the word it came from."""

    digits: str
    owner: tuple[int, ...]  # word index per digit
    first: int  # first word of the run
    last: int  # last word of the run (inclusive)
    formatted: str  # the written token when the run is one formatted token, else ""
    merges: tuple[int, ...] = ()  # digit positions of "forty one"-style merges (tens digit)

    def readings(self, limit: int = 4) -> list[tuple[str, tuple[int, ...]]]:
        """Digits and owners of this run, then of the readings where merged tens stand alone.

        "forty one two three" is 4123, or 40123 when the speaker paused after
        "forty" (card numbers read in pairs); speech without punctuation
        cannot tell, so card detection tries both.
        """
        out = [(self.digits, self.owner)]
        points = self.merges[:limit]
        for mask in range(1, 1 << len(points)):
            digits, owner = list(self.digits), list(self.owner)
            for bit, pos in reversed(list(enumerate(points))):
                if mask >> bit & 1:
                    digits.insert(pos + 1, "0")
                    owner.insert(pos + 1, owner[pos])
            out.append(("".join(digits), tuple(owner)))
        return out


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _number_runs(tokens: Sequence[str]) -> list[_Run]:
    """Every maximal run of number words in ``tokens``, as digits mapped to word indices.

    Grouping follows how people read numbers: "forty one" is 41, "nineteen
    eighty five" is 1985, "four hundred eleven" is 411, "two thousand five"
    is 2005, "double four" is 44, "oh" is 0; written tokens give their digits.
    """
    runs: list[_Run] = []
    i, n = 0, len(tokens)
    while i < n:
        digits: list[str] = []
        owner: list[int] = []
        merges: list[int] = []
        start, last = i, -1
        while i < n:
            w = tokens[i]
            nxt = tokens[i + 1] if i + 1 < n else ""
            if _is_written_number(w):
                value, j = "".join(c for c in w if c.isdigit()), i + 1
            elif w in _REPEAT and nxt in _UNITS:
                value, j = str(_UNITS[nxt]) * _REPEAT[w], i + 2
            elif (w in _UNITS or w in _TEENS) and nxt in ("hundred", "thousand"):
                j, number = _scaled(tokens, i)
                value = str(number)
            elif w in _TENS and nxt in _UNITS and _UNITS[nxt] > 0:
                value, j = str(_TENS[w] + _UNITS[nxt]), i + 2
                merges.append(len(owner))
            elif w in _TENS or w in _TEENS:
                value, j = str(_TENS.get(w) or _TEENS[w]), i + 1
            elif w in _UNITS and (w != "o" or digits):  # a lone "o" is a letter, inside a number it is 0
                value, j = str(_UNITS[w]), i + 1
            elif (w in _INSIDE or w in _REPEAT) and digits and _number_follows(tokens, i + 1):
                i += 1
                continue
            else:
                break
            # The first digits of a group belong to its first word, the last digit to its last word.
            owner.extend([i] * (len(value) - 1) + [j - 1])
            digits.append(value)
            last, i = j - 1, j
        if digits:
            formatted = tokens[start] if last == start and _is_written_number(tokens[start]) else ""
            runs.append(_Run("".join(digits), tuple(owner), start, last, formatted, tuple(merges)))
        else:
            i += 1
    return runs


# Words the recogniser writes for a digit it misheard ("four one for one", "one to two").
_HOMOPHONES = {"for": "four", "fore": "four", "to": "two", "too": "two", "won": "one", "ate": "eight",
               "tree": "three", "nought": "zero", "nil": "zero"}  # fmt: skip


def _as_digits(tokens: list[str]) -> list[str]:
    """``tokens`` with digit homophones read as digits where they sit among digits.

    A homophone counts inside a stretch of number words, homophones and fillers
    that holds two or more number words: "four one for one", "seven won ate
    five"; "for two tickets" stays as it is.
    """
    out = list(tokens)
    i, n = 0, len(tokens)
    while i < n:
        j, numbers = i, 0
        while j < n and (_starts_number(tokens[j]) or tokens[j] in _HOMOPHONES or tokens[j] in _INSIDE):
            numbers += _starts_number(tokens[j])
            j += 1
        if numbers >= 2:
            for k in range(i, j):
                out[k] = _HOMOPHONES.get(tokens[k], tokens[k])
        i = max(j, i + 1)
    return out


def _number_follows(tokens: Sequence[str], i: int) -> bool:
    """Whether a number word comes at ``i``, after any words that sit inside numbers."""
    while i < len(tokens) and (tokens[i] in _INSIDE or tokens[i] in _REPEAT):
        i += 1
    return i < len(tokens) and _starts_number(tokens[i])


def _ends_text(tokens: Sequence[str], last: int) -> bool:
    """Whether only fillers follow word ``last``: a number there may go on in the next final."""
    return all(t in _INSIDE or t in _REPEAT or t in _LEAD_IN for t in tokens[last + 1 :])


def _is_written_number(w: str) -> bool:
    return bool(_FORMATTED.match(w))


def _starts_number(w: str) -> bool:
    return w in _UNITS or w in _TEENS or w in _TENS or w in _REPEAT or _is_written_number(w)


def _scaled(tokens: Sequence[str], i: int) -> tuple[int, int]:
    """Parse "<unit|teen> hundred|thousand [...]" at ``i``; returns (next index, value)."""
    n = len(tokens)
    head = _UNITS.get(tokens[i], _TEENS.get(tokens[i], 0))
    value, j = 0, i + 1
    if tokens[j] == "thousand":
        value, j = head * 1000, j + 1
        if j + 1 < n and tokens[j] in _UNITS and tokens[j + 1] == "hundred":
            value, j = value + _UNITS[tokens[j]] * 100, j + 2
    else:
        value, j = head * 100, j + 1
    if j < n and tokens[j] == "and" and j + 1 < n and _starts_number(tokens[j + 1]):
        j += 1
    if j < n and tokens[j] in _TENS:
        value += _TENS[tokens[j]]
        j += 1
        if j < n and tokens[j] in _UNITS and _UNITS[tokens[j]] > 0:
            value += _UNITS[tokens[j]]
            j += 1
    elif j < n and tokens[j] in _TEENS:
        value, j = value + _TEENS[tokens[j]], j + 1
    elif j < n and tokens[j] in _UNITS and _UNITS[tokens[j]] > 0 and tokens[j] != "o":
        value, j = value + _UNITS[tokens[j]], j + 1
    return j, value


def _keyword_before(tokens: Sequence[str], index: int, keys: Sequence[str], window: int) -> bool:
    """Whether one of ``keys`` (one or more words) ends within ``window`` words before ``index``."""
    lo = max(0, index - window)
    before = " " + " ".join(tokens[lo:index]) + " "
    return any(f" {k} " in before or f" {k}s " in before for k in keys)


def _valid_ssn(d: str) -> bool:
    return len(d) == 9 and d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00" and d[5:] != "0000"


def _expiry_like(d: str) -> bool:
    """MMYY, MMYYYY or MYY with a real month and a plausible year."""
    if len(d) in (4, 6) and 1 <= int(d[:2]) <= 12:
        year = d[2:]
        return len(year) == 2 or 2000 <= int(year) <= 2099
    return len(d) == 3 and d[0] != "0"


class _Spans:
    """Collects spans, keeping the first claim on each word."""

    def __init__(self, n: int) -> None:
        self.taken = [False] * n
        self.items: list[tuple[str, int, int]] = []

    def add(self, kind: str, first: int, last: int) -> bool:
        if first > last or any(self.taken[first : last + 1]):
            return False
        for k in range(first, last + 1):
            self.taken[k] = True
        self.items.append((kind, first, last))
        return True


def _classify(run: _Run, toks: Sequence[str], near_card: bool, cfg: RedactionConfig) -> str | None:
    """The kind of a run that holds no card, from its digits, its format and the words before it."""
    d, fmt = run.digits, run.formatted

    def after(keys: Sequence[str]) -> bool:
        return _keyword_before(toks, run.first, keys, cfg.keyword_window)

    if re.fullmatch(r"\d{3}-\d{2}-\d{4}", fmt) or _valid_ssn(d):
        return "ssn"
    if (len(d) == 10 and d[0] in "23456789") or (len(d) == 11 and d[0] == "1" and d[1] in "23456789"):
        return "phone"
    if len(d) == 7 and after(_PHONE_KEYS):
        return "phone"
    if 3 <= len(d) <= 4 and after(_CVV_KEYS):
        return "cvv"
    if _expiry_like(d) and (after(_EXPIRY_KEYS) or (near_card and len(d) != 3)):
        return "expiry"
    if 3 <= len(d) <= 4 and near_card:
        return "cvv"
    return None


def _find_card(digits: str) -> tuple[int, int] | None:
    """Leftmost, then longest, Luhn-valid window of 13-19 digits starting with 2-6."""
    for a in range(0, len(digits) - 12):
        if digits[a] not in "23456":
            continue
        for length in range(min(19, len(digits) - a), 12, -1):
            if luhn_valid(digits[a : a + length]):
                return a, a + length
    return None


def _card_in_run(run: _Run, spans: _Spans, tail: str = "") -> int | None:
    """Redact a card in ``run`` (after ``tail``, the digits that ended the previous final).

    Of all readings of the run, the card covering the most words wins (the
    plain reading on ties): a 13-digit window of a misread 15-digit card can
    pass Luhn by chance. With a ``tail``, only a card that starts in the tail
    and ends in this run counts. Digits after the card in the same run are
    read as an expiry and then a cvv, the order callers read them out.
    Returns the card's last word.
    """
    best: tuple[int, str, tuple[int, ...], int, int] | None = None
    for digits, owner in run.readings():
        hit = _find_card(tail + digits)
        if hit is None or (tail and not hit[0] < len(tail) < hit[1]):
            continue
        a, b = max(hit[0] - len(tail), 0), hit[1] - len(tail)
        words = owner[b - 1] - owner[a]
        if best is None or words > best[0]:
            best = (words, digits, owner, a, b)
    if best is None:
        return None
    _, digits, owner, a, b = best
    spans.add("card", owner[a], owner[b - 1])
    end, rest = owner[b - 1], digits[b:]
    for size in (4, 6, 3):
        if len(rest) >= size and _expiry_like(rest[:size]) and len(rest) - size in (0, 3, 4):
            spans.add("expiry", owner[b], owner[b + size - 1])
            b, rest = b + size, rest[size:]
            break
    if 3 <= len(rest) <= 4:
        spans.add("cvv", owner[b], owner[-1])
    elif len(rest) > 4:  # more digits than an expiry and a cvv: the card said twice, or another one
        # The card's last word may hold the first of these digits ("5261" split by the window).
        spans.add("card", owner[b] if owner[b] > owner[b - 1] else owner[b - 1] + 1, owner[-1])
        end = owner[-1]
    return end


def _emails(tokens: Sequence[str], spans: _Spans) -> None:
    for i, w in enumerate(tokens):
        if _EMAIL_RE.match(w):
            spans.add("email", i, i)
    n = len(tokens)
    for i, w in enumerate(tokens):
        if w != "at" or i == 0 or tokens[i - 1] in _EMAIL_STOP:
            continue
        # Domain: label (dot label)+ ending in a known TLD.
        j, end = i + 1, -1
        while j < n and tokens[j] not in _EMAIL_JOIN and tokens[j] not in _EMAIL_STOP:
            if j + 2 < n and tokens[j + 1] in ("dot", "period") and tokens[j + 2] not in _EMAIL_STOP:
                if tokens[j + 2] in _TLDS:
                    end = j + 2
                j += 2
            else:
                break
        if end < 0:
            continue
        # Local part: words before "at", across joiners, spelled letters and digits,
        # stopping at words that frame the address ("my email is ...").
        k = i - 1
        while k - 1 >= 0:
            prev = tokens[k - 1]
            if prev in _EMAIL_JOIN and k - 2 >= 0 and tokens[k - 2] not in _EMAIL_STOP:
                k -= 2
            elif prev not in _EMAIL_STOP and prev not in _EMAIL_JOIN and (
                len(prev) == 1 or _starts_number(prev) or _starts_number(tokens[k])
            ):
                k -= 1
            else:
                break
        spans.add("email", k, end)


def _dates_of_birth(tokens: Sequence[str], runs: Sequence[_Run], cfg: RedactionConfig, spans: _Spans) -> None:
    """Dates after a birth keyword: "march third nineteen eighty five", "03/15/1985", "oh three fifteen eighty five"."""
    n = len(tokens)
    by_first = {r.first: r for r in runs}
    for i, w in enumerate(tokens):
        if w not in _MONTHS or not _keyword_before(tokens, i, _DOB_KEYS, cfg.keyword_window):
            continue
        j = i + 1
        if j < n and tokens[j] == "the":
            j += 1
        if j < n and (tokens[j] in _ORDINALS or _ORDINAL_RE.match(tokens[j])):
            j += 1
        elif j + 1 < n and tokens[j] in _TENS and tokens[j + 1] in _ORDINALS:  # "twenty third"
            j += 2
        run = by_first.get(j)  # the year, or day and year read as numbers: "fifteen nineteen eighty five"
        last = run.last if run is not None and len(run.digits) >= 2 else j - 1
        if last > i:
            spans.add("dob", i, last)
    for run in runs:
        d = run.digits
        if not _keyword_before(tokens, run.first, _DOB_KEYS, cfg.keyword_window):
            continue
        if _WRITTEN_DATE.match(run.formatted):
            spans.add("dob", run.first, run.last)
            continue
        # MMDDYY(YY), or M DD YY(YY) when the month has one digit.
        if (len(d) in (6, 8) and 1 <= int(d[:2]) <= 12 and 1 <= int(d[2:4]) <= 31) or (
            len(d) in (5, 7) and d[0] != "0" and 1 <= int(d[1:3]) <= 31
        ):
            spans.add("dob", run.first, run.last)


def redact(
    state: RedactionState, tokens: Sequence[str], config: RedactionConfig | None = None, *, capture: bool = False
) -> tuple[RedactionState, list[tuple[str, int, int]]]:
    """Find PII/PCI in one final's words (lowercase strings, in order).

    ``capture``: the call is in a card-capture context (see ``StreamRedactor``),
    where every run of ``capture_digits`` or more is redacted, Luhn or not.
    Returns the new state and ``(kind, first_word, last_word)`` spans
    (inclusive word indices), sorted by position, never overlapping.
    ``state`` is not modified.
    """
    cfg = config or RedactionConfig()
    toks = [t.lower().strip(",;:!?\"") for t in tokens]
    # A sentence-final period belongs to the sentence, not to "4111." or "gmail.com.".
    toks = _as_digits([t[:-1] if t.endswith(".") and len(t) > 1 else t for t in toks])
    spans = _Spans(len(toks))
    _emails(toks, spans)
    runs = [r for r in _number_runs(toks) if not any(spans.taken[r.first : r.last + 1])]
    _dates_of_birth(toks, runs, cfg, spans)

    card_end: int | None = None  # word index where the last card of this final ended
    if state.words_since_card is not None and state.words_since_card <= cfg.card_window:
        card_end = -1 - state.words_since_card
    first_continues = False
    for r_i, run in enumerate(runs):
        if any(spans.taken[run.first : run.last + 1]):
            continue
        d = run.digits
        # A run opening this final may continue the digits that closed the previous one.
        continues = r_i == 0 and bool(state.tail_digits) and all(t in _LEAD_IN for t in toks[: run.first])
        first_continues = first_continues or continues
        end = _card_in_run(run, spans, state.tail_digits) if continues else None
        if end is None and len(d) >= 13 - len(run.merges):
            end = _card_in_run(run, spans)
        if end is not None:
            card_end = end
            continue
        near_card = card_end is not None and run.first - card_end <= cfg.card_window
        kind = _classify(run, toks, near_card, cfg)
        is_date = bool(_WRITTEN_DATE.match(run.formatted)) or (run.first > 0 and toks[run.first - 1] in _MONTHS)
        # The length rules count a run that continues the previous final's digits together with
        # them: a number read in groups, with pauses the recogniser ends utterances at, is one run.
        joined = len(d) + (len(state.tail_digits) if continues else 0)
        if kind is None and capture and len(d) >= cfg.capture_digits:
            kind = "card"
        elif kind is None and not is_date and _ends_text(toks, run.last) and cfg.prefix_digits <= joined < 13:
            kind = "card"  # possibly the first half of a card that the next final completes
        elif kind is None and not is_date and joined >= cfg.long_run_digits:
            # A card or phone number that the recogniser got a digit wrong in fails every
            # checksum and length rule; a long run of spoken digits is private either way.
            kind = "phone" if joined <= 11 else "card"
        if kind is not None:
            spans.add(kind, run.first, run.last)
    # Months spoken as names after an expiry keyword: "expires april twenty six".
    for i, w in enumerate(toks):
        if w in _MONTHS and not spans.taken[i] and _keyword_before(toks, i, _EXPIRY_KEYS, cfg.keyword_window):
            run = next((r for r in runs if r.first == i + 1), None)
            if run is not None and len(run.digits) in (2, 4):
                spans.add("expiry", i, run.last)

    tail = ""
    if runs and _ends_text(toks, runs[-1].last):
        # A final that is all one continuing run passes the whole run on, for the next final's rules.
        carried = state.tail_digits if len(runs) == 1 and first_continues else ""
        tail = (carried + runs[-1].digits)[-18:]
    last_card = max((last for kind, _, last in spans.items if kind == "card"), default=None)
    if last_card is not None:
        since: int | None = len(toks) - 1 - last_card
    elif state.words_since_card is not None:
        since = state.words_since_card + len(toks)
    else:
        since = None
    new_state = replace(state, tail_digits=tail, words_since_card=since)
    return new_state, sorted(spans.items, key=lambda s: s[1])


def spans_for_words(
    items: Sequence[tuple[str, int, int]], words: Sequence[Word]
) -> tuple[RedactedSpan, ...]:
    """Attach the times of ``words`` to ``(kind, first, last)`` spans."""
    return tuple(RedactedSpan(kind, a, b, words[a].start, words[b].end) for kind, a, b in items)


# ---------------------------------------------------------------------------
# Streams: partials and finals redacted before they leave the recogniser
# ---------------------------------------------------------------------------

# What each redaction mode (as hosted ASR APIs name them) covers, in span kinds.
MODES: dict[str, frozenset[str]] = {
    "pci": frozenset({"card", "cvv", "expiry"}),
    "ssn": frozenset({"ssn"}),
    "phone": frozenset({"phone"}),
    "email": frozenset({"email"}),
    "dob": frozenset({"dob"}),
    "numbers": frozenset({"number"}),
}
DEFAULT_MODES = StreamConfig().redact
# Words that open a capture context: the agent asks for the card (or a phone number), or the
# caller names it.
_CAPTURE_CUES = ("card", "credit", "debit", "visa", "mastercard", "amex", "number", "digits", "phone", "call",
                 "reach", "cell", "mobile", "contact")  # fmt: skip


_NUMBER_WORDS = tuple(sorted({*_UNITS, *_TEENS, *_TENS, *_REPEAT} - {"o"}))


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """``modes`` validated; raises ``ValueError`` naming the unknown ones."""
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown redaction mode {', '.join(unknown)}; expected some of {', '.join(MODES)}")
    return tuple(dict.fromkeys(modes))


@dataclass
class StreamRedactionState:
    """Per stream (one call): the kinds to redact, each channel's tail, and the card-capture context.

    The context is shared by the channels: when the agent asks for the card,
    the customer's digits that follow are read in it.
    """

    kinds: frozenset[str]
    channels: dict[str, RedactionState] = field(default_factory=dict)
    capture_until: float = float("-inf")  # s, stream time the card-capture context ends


class StreamRedactor:
    """Redacts partials and finals of streams; shared and read-only apart from each stream's state.

    Partials are redacted against the stream's state without advancing it;
    their number words never count as stable, so a later partial may still
    mask them. A final advances the state and carries its spans
    (``Final.redactions``) so that the audio can be muted.
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config or RedactionConfig()

    def new_state(self, modes: Sequence[str] = DEFAULT_MODES) -> StreamRedactionState:
        kinds = frozenset().union(*(MODES[m] for m in check_modes(modes)))
        return StreamRedactionState(kinds=kinds)

    def _spans(
        self, state: StreamRedactionState, channel: str, words: Sequence[Word], *, partial: bool = False
    ) -> tuple[RedactionState, list[tuple[str, int, int]]]:
        tokens = [w.text.lower() for w in words]
        if partial and tokens and not _starts_number(tokens[-1]):
            # A partial's last word may still be growing: "fift" is a number word on its way.
            tokens[-1] = next((w for w in _NUMBER_WORDS if w.startswith(tokens[-1])), tokens[-1])
        cues = [i for i, t in enumerate(tokens) if t.strip(",.?!") in _CAPTURE_CUES]
        if cues:
            state.capture_until = max(state.capture_until, words[cues[-1]].end + self.config.capture_s)
        capture = bool(cues) or (bool(words) and words[0].start <= state.capture_until)
        previous = state.channels.get(channel, RedactionState())
        # The trailing digits of a partial may be the start of a card still being read.
        config = replace(self.config, prefix_digits=self.config.capture_digits) if partial else self.config
        new, items = redact(previous, tokens, config, capture=capture)
        if "number" in state.kinds:
            taken = {k for _, a, b in items for k in range(a, b + 1)}
            toks = _as_digits([t.strip(",;:!?\".") for t in tokens])
            items += [("number", r.first, r.last) for r in _number_runs(toks)
                      if not taken & set(range(r.first, r.last + 1))]
        items = sorted((it for it in items if it[0] in state.kinds), key=lambda it: it[1])
        if capture and any(kind == "card" for kind, _, _ in items):
            last = max(b for kind, _, b in items if kind == "card")
            state.capture_until = max(state.capture_until, words[last].end + self.config.capture_s)
        return new, items

    def final(self, state: StreamRedactionState, final: Final) -> Final:
        """``final`` with its private words masked and ``redactions`` set; advances ``state``."""
        words = _timed_tokens(final.text, final.words, final.start, final.end)
        # The n-best alternatives are read against the state this final was, before it advances.
        nbest = tuple(replace(h, text=self._masked_text(state, final.channel, h.text, final.start, final.end))
                      for h in final.nbest)
        new, items = self._spans(state, final.channel, words)
        state.channels[final.channel] = new
        spans = spans_for_words(items, words)
        return replace(final, text=mask_text([w.text for w in words], spans), words=_masked(words, spans),
                       nbest=nbest, redactions=spans)

    def partial(self, state: StreamRedactionState, partial: Partial) -> Partial:
        """``partial`` with its private words masked, and no number word counted as stable."""
        words = _timed_tokens(partial.text, partial.words, partial.start, partial.end)
        _, items = self._spans(state, partial.channel, words, partial=True)
        spans = spans_for_words(items, words)
        toks = _as_digits([w.text.lower().strip(",;:!?\".") for w in words])
        first_number = next((i for i, t in enumerate(toks) if _starts_number(t) or t in _TEENS or t in _TENS),
                            len(toks))
        return replace(partial, text=mask_text([w.text for w in words], spans), words=_masked(words, spans),
                       stable=min(partial.stable, first_number))

    def _masked_text(self, state: StreamRedactionState, channel: str, text: str, start: float, end: float) -> str:
        words = _timed_tokens(text, (), start, end)
        _, items = self._spans(state, channel, words)
        return mask_text([w.text for w in words], spans_for_words(items, words))


def _timed_tokens(text: str, words: Sequence[Word], start: float, end: float) -> tuple[Word, ...]:
    """The words of ``text``: ``words`` when they match it, else its tokens spread over [start, end]."""
    tokens = text.split()
    if len(words) == len(tokens) and all(w.text == t for w, t in zip(words, tokens)):
        return tuple(words)
    step = (end - start) / max(len(tokens), 1)
    return tuple(Word(t, start + i * step, start + (i + 1) * step, 0.0) for i, t in enumerate(tokens))


def _masked(words: Sequence[Word], spans: Sequence[RedactedSpan]) -> tuple[Word, ...]:
    hidden = {i for s in spans for i in range(s.first_word, s.last_word + 1)}
    return tuple(replace(w, text=_MARK * max(len(w.text), 1)) if i in hidden else w for i, w in enumerate(words))


def spoken_digits(text: str) -> list[str]:
    """The digits of each run of number words in ``text``, as a reader of the text would take them.

    >>> spoken_digits("call four one for one or 555-0100")
    ['4141', '5550100']
    """
    tokens = [t.lower().strip(",;:!?\"") for t in text.split()]
    tokens = _as_digits([t[:-1] if t.endswith(".") and len(t) > 1 else t for t in tokens])
    return [r.digits for r in _number_runs(tokens)]
