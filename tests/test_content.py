"""Content filtering: PII/PCI redaction (generated spoken and written variants), masking, toxicity model."""

from __future__ import annotations

import csv
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from operators.content import DEFAULT_TOXICITY, ToxicityModel, text_features
from operators.redaction import RedactionState, luhn_valid, mask_text, redact, spans_for_words
from stream.events import RedactedSpan, Word

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intent"

# ---------------------------------------------------------------------------
# A generator of spoken and written PII, independent of the code under test
# ---------------------------------------------------------------------------

_DIGIT = "zero one two three four five six seven eight nine".split()
_TEEN = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_MONTH = "january february march april may june july august september october november december".split()
_ORD = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
        "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth").split()  # fmt: skip


def _pair(d: str, rng: random.Random) -> str:
    """Two digits read as people read them: "41" forty one, "05" oh five, "10" ten, "00" double oh."""
    n = int(d)
    if d[0] == "0":
        return ("double oh" if d == "00" else f"oh {_DIGIT[n]}") if rng.random() < 0.7 else f"zero {_DIGIT[n]}"
    if n < 20:
        return _TEEN[n - 10]
    return _TENS[n // 10] + ("" if n % 10 == 0 else f" {_DIGIT[n % 10]}")


def _spoken_digits(digits: str, rng: random.Random, style: str | None = None) -> str:
    style = style or rng.choice(["digits", "digits", "pairs", "mixed"])
    if style == "digits":
        zero = rng.choice(["zero", "oh"])
        return " ".join(zero if c == "0" else _DIGIT[int(c)] for c in digits)
    if style == "pairs" and len(digits) % 2 == 0:
        return " ".join(_pair(digits[i : i + 2], rng) for i in range(0, len(digits), 2))
    # Mixed: groups of four read as two pairs or as digits.
    out = []
    for i in range(0, len(digits), 4):
        g = digits[i : i + 4]
        out.append(_spoken_digits(g, rng, "pairs" if len(g) % 2 == 0 and rng.random() < 0.5 else "digits"))
    return " ".join(out)


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16), ("4", 13)])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    for check in "0123456789":
        if luhn_valid(body + check):
            return body + check
    raise AssertionError("unreachable: one check digit always fits")


def _written_card(d: str, rng: random.Random) -> str:
    sep = rng.choice([" ", "-", ""])
    if len(d) == 15:
        return sep.join([d[:4], d[4:10], d[10:]]) if sep else d
    return sep.join(d[i : i + 4] for i in range(0, len(d), 4)) if sep else d


def _ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"


def _phone(rng: random.Random) -> str:
    return f"{rng.randint(2, 9)}{rng.randint(0, 99):02d}{rng.randint(2, 9)}{rng.randint(0, 999999):06d}"


def _year_words(y: int, rng: random.Random) -> str:
    if 2000 <= y < 2010:
        return f"two thousand {_DIGIT[y % 10]}" if y % 10 else "two thousand"
    return f"{_pair(str(y)[:2], rng)} {_pair(str(y)[2:], rng)}"


Case = tuple[list[str], list[tuple[str, int, int]]]  # tokens, expected (kind, first, last)


def _place(template: str, parts: dict[str, tuple[str, str]]) -> Case:
    """Fill ``{name}`` slots with (kind, text); returns tokens and the word range of each slot."""
    tokens: list[str] = []
    expected: list[tuple[str, int, int]] = []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            kind, text = parts[piece[1:-1]]
            words = text.split()
            expected.append((kind, len(tokens), len(tokens) + len(words) - 1))
            tokens.extend(words)
        else:
            tokens.append(piece)
    return tokens, expected


def generate_pii(n: int, seed: int = 0) -> list[Case]:
    """``n`` sentences with PII, spoken and written, and the spans a redactor must find."""
    rng = random.Random(seed)
    cases: list[Case] = []
    kinds = ["card", "card_cvv_exp", "ssn", "phone", "email", "dob"]
    while len(cases) < n:
        kind = kinds[len(cases) % len(kinds)]
        written = rng.random() < 0.35
        if kind == "card":
            d = _card(rng)
            text = _written_card(d, rng) if written else _spoken_digits(d, rng)
            template = rng.choice(["my card number is {x}", "it's {x}", "{x}", "the number on the card is {x} thank you",
                                   "sure um {x}", "card {x} please"])  # fmt: skip
            cases.append(_place(template, {"x": ("card", text)}))
        elif kind == "card_cvv_exp":
            d = _card(rng)
            mm, yy = rng.randint(1, 12), rng.randint(25, 35)
            cvv = "".join(rng.choice("0123456789") for _ in range(3 if d[0] != "3" else 4))
            if written:
                card, exp, code = _written_card(d, rng), rng.choice([f"{mm:02d}/{yy}", f"{mm:02d}/20{yy}"]), cvv
            else:
                card = _spoken_digits(d, rng)
                exp = rng.choice([f"{_pair(f'{mm:02d}', rng)} {_pair(str(yy), rng)}", f"{_MONTH[mm - 1]} {_pair(str(yy), rng)}",
                                  f"{_spoken_digits(f'{mm:02d}', rng, 'digits')} {_spoken_digits(str(yy), rng, 'digits')}"])  # fmt: skip
                code = _spoken_digits(cvv, rng, "digits")
            template = rng.choice([
                "my card is {c} expiration {e} and the cvv is {v}",
                "card number {c} it expires {e} security code {v}",
                "{c} expiry {e} cvv {v}",
                "the card is {c} and the security code on the back is {v}",
            ])  # fmt: skip
            cases.append(_place(template, {"c": ("card", card), "e": ("expiry", exp), "v": ("cvv", code)}))
        elif kind == "ssn":
            s = _ssn(rng)
            if written:
                text = rng.choice([f"{s[:3]}-{s[3:5]}-{s[5:]}", s])
            else:
                text = rng.choice([_spoken_digits(s, rng, "digits"),
                                   f"{_spoken_digits(s[:3], rng, 'digits')} dash {_spoken_digits(s[3:5], rng, 'digits')} dash {_spoken_digits(s[5:], rng, 'digits')}"])  # fmt: skip
            template = rng.choice(["my social is {x}", "social security number {x}", "it's {x}", "ssn {x} thanks"])
            cases.append(_place(template, {"x": ("ssn", text)}))
        elif kind == "phone":
            p = _phone(rng)
            if written:
                text = rng.choice([f"({p[:3]}) {p[3:6]}-{p[6:]}", f"{p[:3]}-{p[3:6]}-{p[6:]}", f"{p[:3]}.{p[3:6]}.{p[6:]}",
                                   f"+1 {p[:3]} {p[3:6]} {p[6:]}", p])  # fmt: skip
            else:
                text = rng.choice([_spoken_digits(p, rng, "digits"),
                                   f"{_spoken_digits(p[:3], rng, 'digits')} {_spoken_digits(p[3:6], rng, 'digits')} {_spoken_digits(p[6:], rng, 'pairs')}",
                                   "one " + _spoken_digits(p, rng, "digits")])  # fmt: skip
            template = rng.choice(["call me at {x}", "my phone number is {x}", "you can reach me on {x} anytime", "{x}"])
            cases.append(_place(template, {"x": ("phone", text)}))
        elif kind == "email":
            first = rng.choice(["john", "mary", "li", "ahmed", "sara", "jose", "kim", "olga"])
            last = rng.choice(["smith", "nguyen", "garcia", "patel", "brown", "lee"])
            dom = rng.choice(["gmail", "yahoo", "outlook", "acme", "hotmail"])
            tld = rng.choice(["com", "net", "org", "co dot uk", "io"])
            num = rng.choice(["", "", str(rng.randint(1, 99))])
            if written:
                text = f"{first}{rng.choice(['.', '_', ''])}{last}{num}@{dom}.{tld.replace(' dot ', '.')}"
            else:
                join = rng.choice(["dot", "underscore", ""])
                local = f"{first} {join} {last}".replace("  ", " ") if join else f"{first}{last}"
                if num:
                    local += " " + _spoken_digits(num, rng, "digits")
                text = f"{local} at {dom} dot {tld}"
            template = rng.choice(["my email is {x}", "send it to {x} please", "it's {x}", "email address {x}"])
            cases.append(_place(template, {"x": ("email", text)}))
        else:
            y, m, day = rng.randint(1940, 2008), rng.randint(1, 12), rng.randint(1, 28)
            if written:
                text = rng.choice([f"{m:02d}/{day:02d}/{y}", f"{m}/{day}/{str(y)[2:]}", f"{_MONTH[m - 1]} {day} {y}"])
            else:
                text = rng.choice([f"{_MONTH[m - 1]} {_ORD[day - 1] if day <= 20 else 'twenty ' + _ORD[day - 21]} {_year_words(y, rng)}",
                                   f"{_MONTH[m - 1]} {_pair(f'{day:02d}', rng) if day >= 10 else _DIGIT[day]} {_year_words(y, rng)}",
                                   f"{_pair(f'{m:02d}', rng)} {_pair(f'{day:02d}', rng)} {_year_words(y, rng)}"])  # fmt: skip
            template = rng.choice(["my date of birth is {x}", "i was born on {x}", "dob {x}", "birthday {x}"])
            cases.append(_place(template, {"x": ("dob", text)}))
    return cases


def _found(expected: tuple[str, int, int], spans: list[tuple[str, int, int]]) -> bool:
    kind, a, b = expected
    return any(k == kind and s <= a and e >= b for k, s, e in spans)


def _score(cases: list[Case]) -> tuple[float, list[str]]:
    hits, misses = 0, []
    total = 0
    for tokens, expected in cases:
        _, spans = redact(RedactionState(), tokens)
        for exp in expected:
            total += 1
            if _found(exp, spans):
                hits += 1
            else:
                misses.append(f"{exp[0]}: {' '.join(tokens)} -> {spans}")
    return hits / total, misses


def test_generator_makes_valid_cards_and_enough_variants():
    cases = generate_pii(2400)
    assert len(cases) >= 2000
    assert len({" ".join(t) for t, _ in cases}) >= 2000  # variants, not repeats
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_pii_recall_on_generated_variants():
    recall, misses = _score(generate_pii(2400, seed=1))
    assert recall >= 0.99, f"recall {recall:.4f}; first misses:\n" + "\n".join(misses[:15])


@pytest.mark.parametrize(
    "tokens, kind, first, last",
    [
        ("my card is four one one one one one one one one one one one one one one one".split(), "card", 3, 18),
        ("forty one eleven eleven eleven eleven eleven eleven eleven".split(), "card", 0, 8),
        ("4111 1111 1111 1111".split(), "card", 0, 3),
        ("4111-1111-1111-1111".split(), "card", 0, 0),
        ("john dot smith at gmail dot com".split(), "email", 0, 6),
        ("write to john.smith@gmail.com.".split(), "email", 2, 2),
        ("my social is 123-45-6789".split(), "ssn", 3, 3),
        ("call me at (555) 123-4567".split(), "phone", 3, 4),
        ("date of birth march third nineteen eighty five".split(), "dob", 3, 7),
        ("it expires oh four twenty six".split(), "expiry", 2, 5),
    ],
)
def test_known_forms(tokens, kind, first, last):
    _, spans = redact(RedactionState(), tokens)
    assert (kind, first, last) in spans, spans


def test_card_followed_by_expiry_and_cvv_without_keywords():
    tokens = ("four " + "one " * 15 + "oh four two six one two three").split()
    _, spans = redact(RedactionState(), tokens)
    assert [s[0] for s in spans] == ["card", "expiry", "cvv"]


def test_a_misheard_card_that_fails_luhn_is_still_redacted():
    # One digit wrong ("two" for "one") breaks the checksum; the run is private all the same.
    _, spans = redact(RedactionState(), "my number is four one one one one one one one one one one one one one one two and".split())
    assert spans == [("card", 3, 18)]


def test_long_digit_runs_are_redacted_without_keywords_or_checksums():
    _, spans = redact(RedactionState(), "it is five five five one two three four and that is all".split())
    assert spans == [("phone", 2, 8)]
    _, spans = redact(RedactionState(), "it is four one one one two two two two three three three three four four and".split())
    assert spans == [("card", 2, 15)]


def test_digit_homophones_among_digits_are_read_as_digits():
    tokens = "it is four one for one one one to one one one one one one one one one ok".split()
    _, spans = redact(RedactionState(), tokens)
    assert spans == [("card", 2, 17)]
    _, spans = redact(RedactionState(), "i paid for two tickets to rome".split())
    assert spans == []


def test_a_card_capture_context_redacts_shorter_runs():
    tokens = "it is four one one one and then two two two two ok".split()
    assert redact(RedactionState(), tokens)[1] == []
    assert redact(RedactionState(), tokens, capture=True)[1] == [("card", 2, 5), ("card", 8, 11)]


def test_no_redaction_of_ordinary_numbers():
    for text in ["i paid twenty five dollars two days ago", "can i have one card for three people",
                 "transfer five hundred to my savings", "it was nineteen ninety nine"]:  # fmt: skip
        _, spans = redact(RedactionState(), text.split())
        assert spans == [], (text, spans)


def test_card_across_two_finals_is_caught():
    state, first = redact(RedactionState(), "my card number is four one one one one one one one".split())
    # The trailing eight digits may start a card: held as such at once.
    assert first == [("card", 4, 11)]
    state, second = redact(state, "one one one one one one one one".split())
    assert second == [("card", 0, 7)]
    # And a following utterance with a cvv right after the card is caught as near the card.
    _, third = redact(state, "and the code is one two three".split())
    assert third == [("cvv", 4, 6)]


def test_state_is_not_mutated_and_tail_only_spans_one_final():
    state = RedactionState()
    new, _ = redact(state, "four one one one one one one one".split())
    assert state == RedactionState() and new.tail_digits == "41111111"
    after, spans = redact(new, "thanks".split())
    assert after.tail_digits == "" and spans == []


def _intent_texts() -> list[str]:
    with (DATA / "banking77" / "train.csv").open(newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    clinc = json.loads((DATA / "clinc150" / "data_full.json").read_text())
    texts += [t for split in ("train", "val", "oos_train", "oos_val") for t, _ in clinc[split]]
    return texts


@pytest.mark.skipif(not DATA.is_dir(), reason="intent corpora not found under /work/shared/data/intent")
def test_false_positive_rate_on_intent_corpora():
    from operators.spoken_form import normalize_text

    texts = _intent_texts()
    flagged = []
    for t in texts:
        for form in (t.lower().split(), normalize_text(t).split()):
            _, spans = redact(RedactionState(), form)
            if spans:
                flagged.append((" ".join(form), spans))
    rate = len(flagged) / (2 * len(texts))
    assert rate <= 0.01, f"false-positive rate {rate:.4f} over {2 * len(texts)} texts; e.g. {flagged[:10]}"


def test_spans_keep_word_timings_and_masking_keeps_alignment():
    words = [Word(w, i * 0.5, i * 0.5 + 0.4, 0.9) for i, w in enumerate("my card is four one one one one one one one one one one one one one one one damn".split())]
    _, items = redact(RedactionState(), [w.text for w in words])
    spans = spans_for_words(items, words)
    (card,) = spans
    assert (card.start, card.end) == (words[3].start, words[18].end)
    masked = mask_text([w.text for w in words], [*spans, RedactedSpan("profanity", 19, 19, words[19].start, words[19].end)])
    out = masked.split()
    assert len(out) == len(words)
    assert out[:3] == ["my", "card", "is"] and set("".join(out[3:19])) == {"#"} and out[19] == "d***"


def test_text_features_match_scikit_learn_char_wb():
    from sklearn.feature_extraction.text import CountVectorizer

    text = "you are a stupid bitch"
    grams, chars = text_features(text)
    cv = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit([text])
    assert sorted(set(chars)) == sorted(cv.vocabulary_)
    assert "stupid bitch" in grams and "you" in grams


def test_bundled_toxicity_model_scores_and_masks():
    model = ToxicityModel.load()
    assert model.score("you are a stupid bitch") > model.threshold
    assert model.score("i would like to check my card balance please") < model.threshold
    assert model.profane("Bitch,") and not model.profane("kill") and not model.profane("card")
    assert model.word_idf.shape == model.word_coef.shape and model.char_idf.shape == model.char_coef.shape
    assert np.isfinite(model.word_coef).all()


def test_toxicity_embedding_head_round_trips_and_takes_the_larger_score(tmp_path):
    base = ToxicityModel.load()
    coef = np.zeros(8, np.float32)
    coef[0] = 1.0
    model = replace(base, embedding_coef=coef, embedding_bias=-2.0, embedding_encoder="enc-a", combined_threshold=0.6)
    model.save(tmp_path / "m.npz")
    loaded = ToxicityModel.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.embedding_coef, coef)
    assert (loaded.embedding_bias, loaded.embedding_encoder, loaded.combined_threshold) == (-2.0, "enc-a", 0.6)
    text = "i would like to check my card balance please"
    hot, cold = np.eye(8, dtype=np.float32)[0] * 10.0, np.zeros(8, np.float32)
    assert loaded.score(text, hot) == pytest.approx(1 / (1 + np.exp(-8.0)))
    assert loaded.score(text, cold) == pytest.approx(max(base.score(text), 1 / (1 + np.exp(2.0))))
    assert loaded.score(text) == base.score(text)
    assert loaded.threshold_for(hot) == 0.6 and loaded.threshold_for(None) == base.threshold
    assert loaded.uses_embeddings_of("enc-a") and not loaded.uses_embeddings_of("enc-b")
    plain = replace(ToxicityModel.load(DEFAULT_TOXICITY), embedding_coef=None)
    assert plain.score(text, hot) == base.score(text) and plain.threshold_for(hot) == plain.threshold


# ---------------------------------------------------------------------------
# Phrase rules for abuse aimed at the listener (sentences written for these tests)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "categories"),
    [
        ("i am going to stab you", ("threat",)),
        ("i know where you work", ("threat",)),
        ("go back to your own country", ("slur",)),
        ("you are an absolute moron", ("insult",)),
        ("are you incompetent or something", ("insult",)),
        ("what are you wearing", ("harassment",)),
        ("shut up you stupid retard", ("slur", "insult")),
        ("I'll Kill You", ("threat",)),
    ],
)
def test_abuse_rules_find_their_category(text, categories):
    from operators.abuse_lexicon import abuse_categories

    assert abuse_categories(text) == categories


@pytest.mark.parametrize(
    "text",
    [
        "i'll shoot you an email", "kill the transfer please", "i'm going to beat you to it", "i feel like an idiot",
        "you're not stupid the app is", "this damn card never works", "my husband will kill me",
        "can i go back to your main menu", "are you lying to me about the fee", "the fees suck my account dry",
        "i'd like to speak to a real person", "my tranny went out and i need a car loan", "an animal shelter donation",
    ],
)
def test_abuse_rules_leave_clean_text_alone(text):
    from operators.abuse_lexicon import abuse_categories

    assert abuse_categories(text) == ()


def test_group_generators_never_write_a_line_of_the_group_hate_sets():
    """The group-hate sets measure how far the filter carries over, so no generated training line is one of theirs."""
    from models.toxicity_train import GROUP_HATE, GROUP_HATE_UNSEEN, group_hate_positives, group_mention_negatives
    from operators.spoken_form import normalize_text

    measured = set()
    for path in (GROUP_HATE, GROUP_HATE_UNSEEN):
        with path.open(newline="") as f:
            measured |= {normalize_text(r["text"]) for r in csv.DictReader(f)}
    hate, clean = group_hate_positives(3000), group_mention_negatives(4500)
    assert len(measured) == 220 and not measured & {*hate, *clean}
    assert len(set(hate)) > 2000 and len(set(clean)) > 1000 and not set(hate) & set(clean)


def test_combined_threshold_has_the_best_mean_f1_that_flags_little_clean_text():
    """Set a is right at thresholds up to 0.45, set b above 0.5; their mean F1 peaks at 0.21-0.45,
    where 2 of 100 clean texts (scored 0.5) are flagged, over the 0.4% cap, so the threshold is
    the best above 0.5."""
    from models.toxicity_train import tune_combined_threshold

    model = ToxicityModel.load()
    a = (np.array([0.45, 0.45, 0.45, 0.1]), np.array([1, 1, 1, 0]))
    b = (np.array([0.85, 0.5, 0.2]), np.array([1, 0, 0]))
    clean = np.r_[np.zeros(98), 0.5, 0.5]
    tuned = tune_combined_threshold(model, {"a": a, "b": b}, clean)
    assert tuned.combined_threshold > 0.5
    assert tuned.metrics["dev_combined_b_f1"] == 1.0 and tuned.metrics["dev_combined_clean_flag_rate"] == 0.0
    with pytest.raises(ValueError, match="clean"):
        tune_combined_threshold(model, {"a": a}, np.ones(10))


@pytest.mark.skipif(not DATA.is_dir(), reason="intent corpora not found under /work/shared/data/intent")
def test_abuse_rules_rarely_fire_on_intent_corpora():
    from models.train.corpus import load_intent_sentences
    from operators.abuse_lexicon import abuse_categories

    texts = load_intent_sentences(DATA)
    hits = [t for t in texts if abuse_categories(t)]
    # The 28 of 47,097 found are almost all "(olly) shut up", said to a voice assistant.
    assert len(hits) / len(texts) <= 0.001, hits[:20]


def test_a_rule_match_scores_one_and_names_its_category():
    model = ToxicityModel.load()
    text = "i know where you live"
    assert model.categories(text) == ("threat",) and model.score(text) == 1.0
    assert model.score(text, rules=False) < 1.0


def test_a_number_read_in_groups_across_finals_is_one_run():
    """Callers read cards and phone numbers in groups; an endpoint at each pause cuts the number
    into finals shorter than any length rule. The rules count a continuing run with the digits
    that ended the previous final."""
    for finals, want in [
        (["my card is four one one one", "one one one one five", "five five five five"], [[], [0], [0]]),
        (["call me on five five five", "one two three four"], [[], [0]]),
        (["i have two", "three dogs at home"], [[], []]),
    ]:
        state, got = RedactionState(), []
        for text in finals:
            state, spans = redact(state, text.split())
            got.append([first for _, first, _ in spans])
        assert got == want, (finals, got)
