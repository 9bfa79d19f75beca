"""Synthetic-speech corpus recipe for the character-level CTC acoustic model.

Texts come from the training splits of four intent corpora (banking77,
clinc150, hwu64, snips) plus generated call-centre material (digit strings,
amounts, dates, times, names, spelled letters) and a large share of isolated
words and short phrases, because the real dev sets (FSDD digits, Speech
Commands keywords, AN4 commands) are mostly one to three words long.

Every text is normalised to the model alphabet (`ALPHABET`), rendered by one of
the offline TTS voices (``models.train.tts``) and written as 16-bit FLAC.  One
voice (`HELDOUT_VOICE`) is kept out of the training corpus and used alone for a
held-out test set, so the acoustic model can be scored on a voice it never heard.

Output layout (paths in the manifest are relative to OUT)::

    OUT/manifest.tsv             path, duration, text, speaker (tab-separated)
    OUT/corpus.json              seed and mode, checked when a run resumes
    OUT/audio/<engine>/<id>.flac

Usage::

    python -m models.train.corpus --out runs/corpus/train --n 20000
    python -m models.train.corpus --out runs/corpus/test_heldout_voice --n 300 --holdout
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import random
import sys
import unicodedata
import zlib
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import Pool
from pathlib import Path
from typing import NamedTuple

import soundfile as sf
from tqdm import tqdm

from models.train.tts import ENGINE_SHARES, HELDOUT_VOICE, SAMPLE_RATE, VOICES, Utterance, random_settings, render

from operators.spoken_form import (
    ONES,
    amount_words,
    digits_to_words,
    normalize_text,
    number_to_words,
    ordinal_to_words,
    year_to_words,
)

__all__ = [
    "ALPHABET",
    "DEFAULT_INTENT_ROOT",
    "MAX_WORDS",
    "build_corpus",
    "load_intent_sentences",
    "main",
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "plan_utterances",
    "year_to_words",
]

_LOG = logging.getLogger(__name__)

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
"""Output symbols of the acoustic model, in index order; the CTC blank is added by the model."""

MAX_WORDS = 20  # longer sentences are dropped: they cost render time and rarely occur in calls
DEFAULT_INTENT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "intent"

# Engines read a lone "a" as the article and "h" oddly, so letter runs are
# rewritten as letter names before synthesis; the label keeps the letters.
# ---------------------------------------------------------------------------
# Intent corpora (training splits only)
# ---------------------------------------------------------------------------


def _banking77(root: Path) -> Iterator[str]:
    with (root / "banking77" / "train.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            yield row["text"]


def _clinc150(root: Path) -> Iterator[str]:
    data = json.loads((root / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    for split in ("train", "oos_train"):
        for text, _label in data[split]:
            yield text


def _hwu64(root: Path) -> Iterator[str]:
    for path in sorted((root / "hwu64" / "trainset").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                # The raw user text keeps capitals (acronyms); the annotation is the fallback.
                yield row["answer_from_user"] or row["answer_from_anno"]


def _snips(root: Path) -> Iterator[str]:
    for path in sorted((root / "snips").glob("*/train_*_full.json")):
        # One file has stray latin-1 bytes; the replacement char makes that sentence drop out.
        data = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
        for examples in data.values():
            for example in examples:
                yield "".join(part["text"] for part in example["data"])


def load_intent_sentences(root: Path = DEFAULT_INTENT_ROOT) -> list[str]:
    """Normalised, deduplicated, sorted sentences from the training splits of the intent corpora.

    Uses banking77 train.csv, clinc150 train + oos_train, hwu64 trainset and
    snips train_*_full.json; never a val, dev or test split.  Sentences with
    non-Latin letters or more than `MAX_WORDS` words are dropped.
    """
    texts: set[str] = set()
    for source in (_banking77, _clinc150, _hwu64, _snips):
        for raw in source(root):
            stripped = "".join(c for c in unicodedata.normalize("NFKD", raw) if not unicodedata.combining(c))
            # Letters we cannot spell (CJK, Cyrillic, mojibake) would make label and audio disagree.
            if any((ord(c) > 127 and c.isalnum()) or c == "\ufffd" for c in stripped):
                continue
            text = normalize_text(raw)
            if text and len(text.split()) <= MAX_WORDS:
                texts.add(text)
    return sorted(texts)


def _is_heldout_text(text: str) -> bool:
    """A fixed 1-in-20 slice of intent sentences is reserved for the held-out test set."""
    return zlib.crc32(text.encode()) % 20 == 0


# ---------------------------------------------------------------------------
# Generated call-centre material and short words
# ---------------------------------------------------------------------------

_FIRST_NAMES = """james mary john patricia robert jennifer michael linda william elizabeth david
barbara richard susan joseph jessica thomas sarah charles karen christopher nancy daniel lisa
matthew betty anthony margaret mark sandra donald ashley steven kimberly paul emily andrew donna
joshua michelle kenneth carol kevin amanda brian melissa george deborah timothy stephanie ronald
rebecca edward sharon jason laura jeffrey cynthia ryan kathleen jacob amy gary angela nicholas
shirley eric anna jonathan brenda stephen pamela larry emma justin nicole scott helen brandon
samantha benjamin katherine samuel christine gregory debra alexander rachel frank carolyn patrick
janet raymond maria jack olivia dennis heather jerry diane tyler julie aaron joyce jose victoria
adam kelly nathan christina henry lauren zachary joan douglas evelyn peter judith kyle megan noah
andrea ethan cheryl jeremy hannah walter jacqueline christian martha keith gloria roger teresa
terry ann austin sara sean madison gerald frances carl kathryn harold janice dylan jean arthur
abigail lawrence alice jordan judy jesse sophia bryan grace billy denise bruce amber gabriel
doris joe marilyn logan danielle albert beverly willie isabella alan theresa juan diana wayne
natalie elijah brittany randy charlotte roy marie vincent kayla ralph alexis eugene lori""".split()
_LAST_NAMES = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez
lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson white harris
sanchez clark ramirez lewis robinson walker young allen king wright scott torres nguyen hill
flores green adams nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans
turner diaz parker cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez
ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks
chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo sanders patel myers long
ross foster jimenez powell jenkins perry russell sullivan bell coleman butler henderson barnes
gonzales fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds griffin
wallace moreno west cole hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford
castro marshall owens harrison fernandez mcdonald woods washington kennedy wells vargas henry chen
freeman webb tucker guzman burns crawford olson simpson porter hunter gordon mendez silva shaw
snyder mason dixon munoz hunt hicks holmes palmer wagner black robertson boyd rose stone salazar
fox warren mills meyer rice schmidt garza daniels ferguson nichols stephens soto weaver ryan
gardner payne grant dunn kelley spencer hawkins arnold pierce hansen peters santos hart bradley
knight elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray delgado
berry perkins hoffman johnston matthews pena richards willis carson""".split()
_MONTHS = "january february march april may june july august september october november december".split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
# Speech Commands keywords + AN4 commands + call-centre one-word answers.
_KEYWORDS = """yes no up down left right on off stop go bed bird cat dog happy house marvin sheila
tree wow backward forward follow learn visual enter erase rubout repeat help start hello hi agent
operator representative billing balance cancel payment account card transfer okay sure thanks
goodbye correct wrong continue back menu support please sorry what pardon again next previous
finish done ready wait hold""".split()
_SHORT_PHRASES = """thank you|yes please|no thanks|no thank you|talk to an agent|check my balance|pay my bill
|cancel my card|that's right|that's correct|that's wrong|go back|main menu|start over|turn it on
|turn it off|say that again|speak to someone|lost card|new card|customer service|technical support
|hold on|one moment|i don't know|never mind|good morning|good afternoon|yes it is|no it isn't
|not sure|repeat that|help me|go ahead|stop please|yes that's right|representative please
|agent please|billing question|my account|my balance|reset password|try again|sounds good
|all right|of course|not now|call me back|that's it|i'm done|next one|yes i do|no i don't""".replace(
    "\n", ""
).split("|")
_ACTIONS = """check my balance|pay my bill|report a lost card|report a stolen card|dispute a charge
|activate my card|change my address|reset my password|cancel my subscription|speak to a manager
|make a payment|open a new account|close my account|update my phone number|order a new card
|increase my credit limit|set up autopay|check my order status|return an item|book an appointment
|talk to someone about my bill|change my pin|stop a payment|transfer money""".replace("\n", "").split("|")


def _say_digits(rng: random.Random, digits: str) -> str:
    """Digit by digit, with "zero" or "oh" chosen per utterance as callers do."""
    return digits_to_words(digits, zero=rng.choice(("zero", "zero", "oh")))


def _say_in_pairs(digits: str) -> str:
    """Read a digit string in pairs as numbers: "1513" -> "fifteen thirteen", "05" -> "oh five"."""
    out = []
    for i in range(0, len(digits), 2):
        chunk = digits[i : i + 2]
        if len(chunk) == 1:
            out.append(digits_to_words(chunk))
        elif chunk[0] == "0":
            out.append(digits_to_words(chunk, zero="oh"))
        else:
            out.append(number_to_words(int(chunk)))
    return " ".join(out)


def _random_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _spell(word: str) -> str:
    return " ".join(word)


def _gen_card(rng: random.Random) -> str:
    groups = [_random_digits(rng, 4) for _ in range(4)]
    full = " ".join(_say_digits(rng, g) for g in groups)
    last4 = _say_digits(rng, groups[-1])
    return rng.choice(
        (
            f"my card number is {full}",
            f"card number {full}",
            f"the card number is {full}",
            full,
            f"the last four digits are {last4}",
            f"it ends in {last4}",
            f"card ending in {last4}",
            f"the security code is {_say_digits(rng, _random_digits(rng, 3))}",
            f"it expires {rng.choice(_MONTHS)} {year_to_words(rng.randint(2024, 2032))}",
        )
    )


def _gen_account(rng: random.Random) -> str:
    number = _say_digits(rng, _random_digits(rng, rng.randint(6, 12)))
    return rng.choice(
        (
            f"my account number is {number}",
            f"account number {number}",
            f"it's {number}",
            number,
            f"my member id is {_spell(rng.choice(_LAST_NAMES)[:2])} {number}",
            f"order number {number}",
            f"the reference number is {number}",
        )
    )


def _gen_phone(rng: random.Random) -> str:
    digits = str(rng.randint(2, 9)) + _random_digits(rng, 9)
    if rng.random() < 0.2:
        number = f"{_say_digits(rng, digits[:3])} {_say_digits(rng, digits[3:6])} {_say_in_pairs(digits[6:])}"
    else:
        number = _say_digits(rng, digits)
    return rng.choice(
        (
            f"my phone number is {number}",
            f"call me at {number}",
            f"you can reach me at {number}",
            f"my number is {number}",
            number,
            f"area code {_say_digits(rng, digits[:3])}",
        )
    )


def _gen_code(rng: random.Random) -> str:
    digits = _random_digits(rng, rng.choice((4, 5, 5, 6)))
    spoken = _say_in_pairs(digits) if rng.random() < 0.2 else _say_digits(rng, digits)
    return rng.choice(
        (
            f"my zip code is {spoken}",
            f"zip code {spoken}",
            f"the code is {spoken}",
            f"my pin is {spoken}",
            f"the verification code is {spoken}",
            spoken,
        )
    )


def _gen_amount(rng: random.Random) -> str:
    dollars = int(10 ** rng.uniform(0, 5)) if rng.random() < 0.9 else 0
    cents = rng.randint(0, 99) if rng.random() < 0.5 else 0
    if rng.random() < 0.15 and dollars and cents:
        amount = f"{number_to_words(dollars)} {number_to_words(cents)}"  # "twenty five forty"
    else:
        amount = amount_words(str(dollars), f"{cents:02d}" if cents else None, "$", None)
    return rng.choice(
        (
            f"i want to pay {amount}",
            f"transfer {amount} to my savings account",
            f"my balance is {amount}",
            f"there's a charge of {amount} on my card",
            f"i was charged {amount}",
            f"i need a refund of {amount}",
            f"the payment was {amount}",
            amount,
        )
    )


def _gen_date(rng: random.Random) -> str:
    month, day = rng.choice(_MONTHS), ordinal_to_words(rng.randint(1, 31))
    year = year_to_words(rng.randint(1940, 2030))
    return rng.choice(
        (
            f"{month} {day}",
            f"{month} {day} {year}",
            f"the {day} of {month}",
            f"my date of birth is {month} {day} {year}",
            f"i was born on {month} {day} {year}",
            f"on {rng.choice(_WEEKDAYS)} {month} {day}",
            f"the payment is due on the {day}",
            f"{rng.choice(_WEEKDAYS)}",
            f"in {year}",
        )
    )


def _gen_time(rng: random.Random) -> str:
    hour, minute = rng.randint(1, 12), rng.choice((0, 0, 5, 10, 15, 20, 30, 30, 45, rng.randint(1, 59)))
    hour_words = number_to_words(hour)
    if minute == 0:
        clock = rng.choice((f"{hour_words} o'clock", hour_words))
    elif minute == 15 and rng.random() < 0.5:
        clock = f"quarter past {hour_words}"
    elif minute == 30 and rng.random() < 0.5:
        clock = f"half past {hour_words}"
    elif minute == 45 and rng.random() < 0.5:
        clock = f"quarter to {number_to_words(hour % 12 + 1)}"
    elif minute < 10:
        clock = f"{hour_words} oh {ONES[minute]}"
    else:
        clock = f"{hour_words} {number_to_words(minute)}"
    clock += rng.choice(("", "", " a m", " p m", " in the morning", " in the afternoon", " tonight"))
    return rng.choice(
        (
            clock,
            f"at {clock}",
            f"can you call me back at {clock}",
            f"my appointment is at {clock}",
            f"{clock} tomorrow",
            f"any time after {clock}",
            rng.choice(("at noon", "around midnight", "tomorrow morning", "this afternoon")),
        )
    )


def _gen_name(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    return rng.choice(
        (
            f"my name is {first} {last}",
            f"this is {first}",
            f"this is {first} {last}",
            f"{first} {last}",
            f"i'd like to speak to {first}",
            f"my last name is {last} {_spell(last)}",
            f"that's {_spell(last)}",
            f"{first} spelled {_spell(first)}",
            f"my first name is {first}",
            f"my initials are {_spell(first[0] + last[0])}",
        )
    )


def _gen_number(rng: random.Random) -> str:
    n = int(10 ** rng.uniform(0, rng.choice((2, 3, 4, 6, 9))))
    words = number_to_words(n)
    return rng.choice(
        (
            words,
            words,
            f"i need {words}",
            f"about {words}",
            f"room {words}",
            f"the {ordinal_to_words(rng.randint(1, 30))} one",
            f"number {words}",
            f"{words} {rng.choice(('percent', 'points', 'items', 'people', 'minutes', 'days'))}",
        )
    )


def _gen_ivr(rng: random.Random) -> str:
    digit = rng.choice(ONES[:10])
    return rng.choice(
        (
            f"i want to {rng.choice(_ACTIONS)}",
            f"i'd like to {rng.choice(_ACTIONS)}",
            f"can you help me {rng.choice(_ACTIONS)}",
            f"press {digit}",
            f"option {digit}",
            f"{rng.choice(('yes', 'no'))} {rng.choice(_SHORT_PHRASES)}",
            rng.choice(_ACTIONS),
        )
    )


def _gen_an4(rng: random.Random) -> str:
    """AN4-style command followed by a mix of spelled letters and digits ("rubout g m e f three nine")."""
    tokens = [
        rng.choice("abcdefghijklmnopqrstuvwxyz") if rng.random() < 0.5 else rng.choice(ONES[:10])
        for _ in range(rng.randint(2, 7))
    ]
    command = rng.choice(("enter", "erase", "rubout", "", ""))
    return f"{command} {' '.join(tokens)}".strip()


def _gen_short(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return rng.choice([*ONES[:10], "oh"])
    if r < 0.50:
        return _say_digits(rng, _random_digits(rng, rng.randint(2, 3)))
    if r < 0.80:
        return rng.choice(_KEYWORDS)
    if r < 0.92:
        return rng.choice(_SHORT_PHRASES)
    return _spell("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 3))))


_CALL_CENTRE: tuple[Callable[[random.Random], str], ...] = (
    _gen_card,
    _gen_account,
    _gen_phone,
    _gen_code,
    _gen_amount,
    _gen_date,
    _gen_time,
    _gen_name,
    _gen_number,
    _gen_ivr,
    _gen_an4,
)
# Share of each text source; "short" (isolated words, 1-3 word phrases) mirrors the dev sets.
_TEXT_SHARES = {"intent": 0.45, "call_centre": 0.30, "short": 0.25}
# With general-English sentences (models.train.general_text): a recogniser over a pretrained
# encoder learns to spell from them, and callers say more than intent requests.
_TEXT_SHARES_GENERAL = {"general": 0.40, "intent": 0.30, "call_centre": 0.18, "short": 0.12}


def plan_utterances(
    n: int,
    seed: int,
    intent_sentences: Sequence[str],
    *,
    holdout: bool = False,
    general_sentences: Sequence[str] = (),
) -> list[Utterance]:
    """Deterministic plan of `n` utterances (texts, engines, voices, settings).

    The plan is prefix-stable: the first k utterances are the same for any n >= k,
    which is what makes resuming with a larger n safe.  `holdout` draws intent
    sentences from the reserved 1-in-20 slice and renders everything with
    `HELDOUT_VOICE`; otherwise that slice and that voice are never used.
    """
    mode = "heldout" if holdout else "train"
    rng = random.Random(f"callstream-corpus:{mode}:{seed}")
    pool = [t for t in intent_sentences if _is_heldout_text(t) == holdout]
    if not pool:
        raise ValueError("no intent sentences for this split")
    rng.shuffle(pool)
    engines, engine_weights = list(ENGINE_SHARES), list(ENGINE_SHARES.values())
    train_voices = {e: [v for v in VOICES[e] if (e, v) != HELDOUT_VOICE] for e in engines}
    shares = _TEXT_SHARES_GENERAL if general_sentences else _TEXT_SHARES
    sources, source_weights = list(shares), list(shares.values())
    general = list(general_sentences)
    rng.shuffle(general)

    plan = []
    next_intent = 0
    for i in range(n):
        source = rng.choices(sources, source_weights)[0]
        if source == "intent":
            text = pool[next_intent % len(pool)]
            next_intent += 1
        elif source == "general":
            text = general[i % len(general)]
        elif source == "call_centre":
            text = normalize_text(rng.choice(_CALL_CENTRE)(rng))
        else:
            text = normalize_text(_gen_short(rng))
        if holdout:
            engine, voice = HELDOUT_VOICE
        else:
            engine = rng.choices(engines, engine_weights)[0]
            voice = rng.choice(train_voices[engine])
        settings = random_settings(rng, engine, voice)
        plan.append(Utterance(f"{mode}{seed}-{i:06d}", text, engine, voice, settings))
    return plan


class _Result(NamedTuple):
    uid: str
    path: str  # relative to the output directory; "" on failure
    duration: float
    error: str


def _render_one(utt: Utterance, out_dir: Path) -> _Result:
    try:
        audio = render(utt)
        rel = Path("audio") / utt.engine / f"{utt.uid}.flac"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out_dir / rel, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        return _Result(utt.uid, rel.as_posix(), len(audio) / SAMPLE_RATE, "")
    except Exception as exc:  # one bad utterance must never stop the run
        return _Result(utt.uid, "", 0.0, f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------
# Corpus driver
# ---------------------------------------------------------------------------

_MANIFEST_HEADER = "path\tduration\ttext\tspeaker\n"


def _done_ids(manifest: Path) -> set[str]:
    if not manifest.exists():
        return set()
    with manifest.open(encoding="utf-8") as fh:
        next(fh, None)
        return {Path(line.split("\t", 1)[0]).stem for line in fh if line.strip()}


def _check_config(out_dir: Path, seed: int, holdout: bool, general: bool) -> None:
    """Refuse to resume a directory made with another seed or mode: the ids would collide."""
    path = out_dir / "corpus.json"
    config: dict[str, object] = {"seed": seed, "holdout": holdout, "heldout_voice": ":".join(HELDOUT_VOICE)}
    if general:
        config["general"] = True
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != config:
            raise ValueError(f"{out_dir} was built with {previous}, not {config}")
    else:
        path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def build_corpus(
    out_dir: Path,
    *,
    n_utterances: int,
    seed: int = 0,
    workers: int = 2,
    holdout: bool = False,
    general: bool = False,
    intent_root: Path = DEFAULT_INTENT_ROOT,
) -> Path:
    """Render a synthetic corpus into `out_dir` and return its manifest path.

    Resumes: ids already in `out_dir/manifest.tsv` are skipped and new lines are
    appended and flushed one by one, so an interrupted run loses nothing.  A
    failed utterance is logged and skipped; a rerun retries it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_config(out_dir, seed, holdout, general)
    manifest = out_dir / "manifest.tsv"
    done = _done_ids(manifest)
    general_text: list[str] = []
    if general:
        from models.train.general_text import general_sentences

        general_text = general_sentences()
    plan = plan_utterances(n_utterances, seed, load_intent_sentences(intent_root), holdout=holdout,
                           general_sentences=general_text)
    todo = [u for u in plan if u.uid not in done]
    by_id = {u.uid: u for u in todo}
    _LOG.info(
        "%s: %d planned, %d already done, %d to render", out_dir, len(plan), len(plan) - len(todo), len(todo)
    )

    failures = 0
    new_file = not manifest.exists()
    with manifest.open("a", encoding="utf-8") as fh, Pool(workers) as pool:
        if new_file:
            fh.write(_MANIFEST_HEADER)
        results = pool.imap_unordered(functools.partial(_render_one, out_dir=out_dir), todo, chunksize=4)
        # A redirected log gets a progress line every 30 s instead of ten per second.
        interval = 1.0 if sys.stderr.isatty() else 30.0
        for result in tqdm(results, total=len(todo), desc="render", unit="utt", mininterval=interval):
            utt = by_id[result.uid]
            if result.error:
                failures += 1
                _LOG.warning("skipped %s (%s): %s", utt.uid, utt.speaker, result.error)
                continue
            fh.write(f"{result.path}\t{result.duration:.2f}\t{utt.text}\t{utt.speaker}\n")
            fh.flush()
    _LOG.info("%s: %d rendered, %d failed", manifest, len(todo) - failures, failures)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: python -m models.train.corpus --out DIR --n N [--seed S] [--workers W] [--holdout]."""
    parser = argparse.ArgumentParser(description="Render the synthetic-speech training corpus.")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--n", type=int, required=True, help="number of utterances to plan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--holdout",
        action="store_true",
        help=f"render the held-out test set with {':'.join(HELDOUT_VOICE)} only",
    )
    parser.add_argument("--general", action="store_true",
                        help="add general-English sentences (Debian's wordnet-base and fortunes)")
    parser.add_argument("--intent-root", type=Path, default=DEFAULT_INTENT_ROOT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    build_corpus(
        args.out,
        n_utterances=args.n,
        seed=args.seed,
        workers=args.workers,
        holdout=args.holdout,
        general=args.general,
        intent_root=args.intent_root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
