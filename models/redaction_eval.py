"""Leak tests of redaction: ``callstream eval-redaction`` and the generated adversarial set.

A *leak* is a stretch of ``min_digits`` (6) or more consecutive digits of a
secret (a card or phone number) that a reader can take from one event's text:
spoken ("four one one one"), misheard ("for one won one"), grouped ("one
hundred eleven") or written ("4111-1111").

The CSV has the columns ``text`` and ``secret``. ``text`` is one call: its
finals in order, separated by ``|``, each optionally prefixed with its
channel (``agent:`` or ``customer:``, default customer). Every final goes
through the recogniser's redaction (``operators.redaction.StreamRedactor``)
with the default modes, as the stream would; the command counts the finals,
and the calls, whose redacted text still leaks, and the leaks of the raw
text for comparison.

The adversarial set is generated from the recogniser's own error patterns
on spoken numbers (``generate``): digits read one by one, in pairs or as the
second pass writes them ("one hundred eleven"), "oh" and "double", the
homophones "for", "to", "too", "won" and "ate", dropped, doubled and wrong
digits, fillers, a number split across finals with the agent between, and
written numbers; with and without the agent asking for the card.

    callstream eval-redaction runs/redaction/adversarial.csv
    python -m models.redaction_eval --generate runs/redaction/adversarial.csv --n 2000
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from operators.redaction import StreamRedactor, luhn_valid, spoken_digits
from operators.spoken_form import digits_to_words, number_to_words
from stream.events import Enriched, Event, Final, Partial, Word

__all__ = ["Call", "evaluate", "event_texts", "generate", "leaks", "number_exchange", "read_csv", "write_csv"]

MIN_DIGITS = 6

_AGENT_ASKS = (
    "can you read me the card number please",
    "could i have the long number on the front of your card",
    "please go ahead with your credit card number",
    "what is the sixteen digit number on your debit card",
    "and the number please",
)
_AGENT_PHONE = ("what is the best number to reach you", "can i have a phone number", "and your contact number")
_CARD_LEAD = ("", "it is", "sure it's", "my card number is", "okay", "yes", "uh")
_PHONE_LEAD = ("", "call me at", "you can reach me on", "my number is", "it's")
_HOMOPHONES = {"four": ("for",), "two": ("to", "too"), "one": ("won",), "eight": ("ate",), "zero": ("oh", "o")}
_FILLERS = ("uh", "um", "and", "the", "a")


@dataclass(frozen=True)
class Call:
    """One call of the set: ``(channel, text)`` finals in order, and the secret they hold."""

    finals: tuple[tuple[str, str], ...]
    secret: str


def leaks(text: str, secret: str, min_digits: int = MIN_DIGITS) -> bool:
    """Whether ``text`` gives away ``min_digits`` consecutive digits of ``secret``."""
    pieces = {secret[i : i + min_digits] for i in range(len(secret) - min_digits + 1)}
    return any(p in run for run in spoken_digits(text) for p in pieces)


def event_texts(ev: Event) -> Iterator[str]:
    """Every text an event shows a reader: a partial's or final's text, words and n-best; an enriched event's."""
    if isinstance(ev, (Partial, Final)):
        yield ev.text
        yield " ".join(w.text for w in ev.words)
        yield from (h.text for h in getattr(ev, "nbest", ()))
    elif isinstance(ev, Enriched):
        yield ev.transcript.text
        yield ev.redacted_text


def _card(rng: random.Random) -> str:
    while True:
        digits = rng.choice("3456") + "".join(rng.choice("0123456789") for _ in range(14))
        for last in "0123456789":
            if luhn_valid(digits + last):
                return digits + last


def _phone(rng: random.Random) -> str:
    return rng.choice("23456789") + "".join(rng.choice("0123456789") for _ in range(9))


def _read(rng: random.Random, digits: str, spoken: bool = False) -> list[str]:
    """Words of ``digits`` as a caller says them and (unless ``spoken``) the recogniser may write them."""
    style = rng.random()
    if spoken and style < 0.4:
        style = 0.15 + style * 0.375  # in pairs or digit by digit: how people say them
    if style < 0.15:  # as the second pass writes grouped digits: "one hundred eleven"
        words = []
        for i in range(0, len(digits), 3):
            group = digits[i : i + 3]
            words += (number_to_words(int(group)) if group[0] != "0" else digits_to_words(group, "oh")).split()
        return words
    if style < 0.3:  # in pairs: "forty one eleven"
        words = []
        for i in range(0, len(digits), 2):
            pair = digits[i : i + 2]
            words += (number_to_words(int(pair)) if pair[0] != "0" else digits_to_words(pair, "oh")).split()
        return words
    if style < 0.4:  # written, as a formatter or the second pass writes it
        sep = rng.choice((" ", "-", ""))
        return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4)).split()
    words: list[str] = []
    i = 0
    while i < len(digits):
        if i + 1 < len(digits) and digits[i] == digits[i + 1] and rng.random() < 0.3:
            words += ["double", digits_to_words(digits[i])]
            i += 2
            continue
        words.append(digits_to_words(digits[i], rng.choice(("zero", "oh"))))
        i += 1
    return words


def _mishear(rng: random.Random, words: list[str], rate: float) -> list[str]:
    """The recogniser's errors on spoken digits: homophones, drops, doubles, wrong digits, fillers."""
    out: list[str] = []
    for w in words:
        r = rng.random()
        if r < rate * 0.4 and w in _HOMOPHONES:
            out.append(rng.choice(_HOMOPHONES[w]))
        elif r < rate * 0.6:
            continue  # dropped
        elif r < rate * 0.7:
            out += [w, w]
        elif r < rate * 0.85 and w in _HOMOPHONES | {"three": (), "five": (), "six": (), "seven": (), "nine": ()}:
            out.append(digits_to_words(rng.choice("0123456789")))
        else:
            out.append(w)
        if rng.random() < rate * 0.15:
            out.append(rng.choice(_FILLERS))
    return out


def number_exchange(rng: random.Random, kind: str) -> tuple[str, str, str]:
    """The agent's question, the caller's spoken answer and its digits, for a ``card`` or ``phone`` number.

    The answer is as a caller says it (digit by digit, in pairs, "oh", "double"), with no
    recogniser errors: for calls rendered by TTS voices, where the recogniser makes its own.
    """
    if kind not in ("card", "phone"):
        raise ValueError(f"expected kind card or phone, got {kind!r}")
    card = kind == "card"
    secret = _card(rng) if card else _phone(rng)
    ask = rng.choice(_AGENT_ASKS if card else _AGENT_PHONE)
    answer = " ".join(rng.choice(_CARD_LEAD if card else _PHONE_LEAD).split() + _read(rng, secret, spoken=True))
    return ask, answer, secret


def generate(n: int, seed: int = 0, *, spoken: bool = False) -> list[Call]:
    """``n`` adversarial calls: half cards, half phone numbers, every pattern in the module docstring.

    ``spoken``: the texts as callers say them, to be rendered by TTS voices (no written numbers,
    no recogniser errors: the recogniser makes its own).
    """
    rng = random.Random(seed)
    calls = []
    for k in range(n):
        is_card = k % 2 == 0
        secret = _card(rng) if is_card else _phone(rng)
        finals: list[tuple[str, str]] = []
        if rng.random() < 0.7:
            finals.append(("agent", rng.choice(_AGENT_ASKS if is_card else _AGENT_PHONE)))
        rate = rng.choice((0.0, 0.1, 0.25))
        words = _read(rng, secret, spoken) if spoken else _mishear(rng, _read(rng, secret), rate)
        lead = rng.choice(_CARD_LEAD if is_card else _PHONE_LEAD).split()
        if rng.random() < 0.35 and len(words) > 4:  # read in two turns, the agent in between
            cut = rng.randint(2, len(words) - 2)
            finals.append(("customer", " ".join(lead + words[:cut])))
            if rng.random() < 0.5:
                finals.append(("agent", rng.choice(("okay", "mm hmm", "go on", "yes"))))
            finals.append(("customer", " ".join(words[cut:])))
        else:
            finals.append(("customer", " ".join(lead + words)))
        finals.append(("customer", rng.choice(("thank you", "that's it", "is that right"))))
        calls.append(Call(tuple(finals), secret))
    return calls


def write_csv(calls: Sequence[Call], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "secret"])
        for c in calls:
            w.writerow([" | ".join(f"{ch}: {text}" for ch, text in c.finals), c.secret])


def read_csv(path: Path) -> list[Call]:
    """Calls of a ``text,secret`` CSV; raises ``ValueError`` naming the problem."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"text", "secret"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV with the columns text and secret")
    calls = []
    for i, row in enumerate(rows, start=2):
        secret = "".join(c for c in row["secret"] if c.isdigit())
        if len(secret) < MIN_DIGITS:
            raise ValueError(f"{path}:{i}: the secret needs {MIN_DIGITS} or more digits, got {row['secret']!r}")
        finals = []
        for part in row["text"].split("|"):
            channel, sep, text = part.strip().partition(":")
            finals.append((channel.strip(), text.strip()) if sep and channel.strip() in ("agent", "customer")
                          else ("customer", part.strip()))
        calls.append(Call(tuple(finals), secret))
    return calls


def evaluate(calls: Sequence[Call], modes: Sequence[str] | None = None) -> dict[str, float]:
    """Leaks of the raw and of the redacted finals (per final and per call) over ``calls``."""
    redactor = StreamRedactor()
    finals = raw_finals = redacted_finals = raw_calls = redacted_calls = 0
    for c in calls:
        state = redactor.new_state() if modes is None else redactor.new_state(modes)
        t = 0.0
        call_raw = call_redacted = False
        for i, (channel, text) in enumerate(c.finals):
            tokens = text.split()
            if not tokens:
                continue
            words = tuple(Word(w, round(t + 0.3 * j, 3), round(t + 0.3 * (j + 1), 3), 1.0) for j, w in enumerate(tokens))
            final = Final("eval", channel, f"eval/{channel}/{i}", i, text, words, start=t, end=words[-1].end)
            out = redactor.final(state, final)
            t = words[-1].end + 0.8
            finals += 1
            raw, red = leaks(text, c.secret), leaks(out.text, c.secret)
            raw_finals += raw
            redacted_finals += red
            call_raw |= raw
            call_redacted |= red
        raw_calls += call_raw
        redacted_calls += call_redacted
    return {"calls": len(calls), "finals": finals, "raw_leaking_finals": raw_finals,
            "raw_leaking_calls": raw_calls, "leaking_finals": redacted_finals, "leaking_calls": redacted_calls}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv", type=Path, help="a CSV with the columns text (finals separated by |) and secret")
    p.add_argument("--modes", help="redaction modes, comma-separated (default: the streams' default)")


def run(args: argparse.Namespace) -> int:
    try:
        calls = read_csv(args.csv)
    except (OSError, ValueError) as e:
        print(f"callstream eval-redaction: {e}", file=sys.stderr)
        return 2
    modes = None if args.modes is None else [m.strip() for m in args.modes.split(",") if m.strip()]
    try:
        result = evaluate(calls, modes)
    except ValueError as e:
        print(f"callstream eval-redaction: {e}", file=sys.stderr)
        return 2
    for k, v in result.items():
        print(f"{k:>20}: {v}")
    return 1 if result["leaking_finals"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.redaction_eval", description=__doc__.splitlines()[0])
    p.add_argument("--generate", type=Path, required=True, help="write the adversarial set to this CSV")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    write_csv(generate(args.n, args.seed), args.generate)
    print(f"wrote {args.n} calls to {args.generate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
