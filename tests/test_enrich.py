"""The enrich operator (intent + filters + redaction with per-call state) and the eval commands' contract."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from models import text_eval
from operators.content import ToxicityModel
from operators.enrich import EnrichState, Enricher, enrich, new_state
from operators.intent import default_encoder_dir
from stream.events import Enriched, Final, Word

ENCODER_BUILT = (default_encoder_dir() / "encoder.int8.onnx").is_file()


def _final(text: str, channel: str = "customer", index: int = 0, t0: float = 0.0) -> Final:
    words = tuple(Word(w, t0 + 0.4 * i, t0 + 0.4 * i + 0.3, 0.9) for i, w in enumerate(text.split()))
    return Final(
        stream_id="call-1",
        channel=channel,
        utterance_id=f"call-1/{channel}/{index}",
        utterance_index=index,
        text=text,
        words=words,
        start=t0,
        end=words[-1].end if words else t0,
    )


@pytest.fixture(scope="module")
def filters_only() -> Enricher:
    return Enricher(None, ToxicityModel.load())


def test_redaction_and_masking_keep_word_timings(filters_only):
    final = _final("my card is four one one one one one one one one one one one one one one one you damn bank")
    out = filters_only.enrich(filters_only.new_state(), final)
    assert isinstance(out, Enriched) and out.transcript is final and out.intent is None
    kinds = [s.kind for s in out.flags.spans]
    assert kinds == ["card", "profanity"]
    card, prof = out.flags.spans
    assert (card.first_word, card.last_word) == (3, 18)
    assert (card.start, card.end) == (final.words[3].start, final.words[18].end)
    assert (prof.start, prof.end) == (final.words[20].start, final.words[20].end)
    words = out.redacted_text.split()
    assert len(words) == len(final.words) and words[20] == "d***" and words[3] == "####"
    assert set(out.flags.flagged) >= {"card", "profanity"} and out.flags.profanity == 1.0


def test_masking_off_keeps_the_word_but_still_flags(filters_only):
    out = filters_only.enrich(new_state(), _final("what the fuck is this fee"), mask_profanity=False)
    assert "fuck" in out.redacted_text.split()
    assert "profanity" in out.flags.flagged and all(s.kind != "profanity" for s in out.flags.spans)
    assert 0.0 <= out.flags.toxicity <= 1.0


def test_card_across_finals_per_channel(filters_only):
    state = filters_only.new_state()
    first = filters_only.enrich(state, _final("my card number is four one one one one one one one", index=0))
    # The agent speaks in between; the customer's next final completes the card.
    filters_only.enrich(state, _final("okay go on", channel="agent", index=0, t0=4.0))
    second = filters_only.enrich(state, _final("one one one one one one one one", index=1, t0=6.0))
    assert [s.kind for s in first.flags.spans] == ["card"]
    assert [(s.kind, s.first_word, s.last_word) for s in second.flags.spans] == [("card", 0, 7)]
    assert second.flags.spans[0].start == 6.0
    assert set(state.redaction) == {"customer", "agent"}


def test_clean_banking_request_is_not_flagged(filters_only):
    out = filters_only.enrich(EnrichState(), _final("i would like to order a new card please"))
    assert out.flags.flagged == () and out.flags.spans == ()
    assert out.redacted_text == "i would like to order a new card please"


def test_abuse_rules_name_their_category_and_flag_toxicity(filters_only):
    out = filters_only.enrich(new_state(), _final("i know where you live"))
    assert out.flags.flagged == ("threat", "toxicity") and out.flags.toxicity == 1.0
    swearing = filters_only.enrich(new_state(), _final("this damn card never works"))
    assert "threat" not in swearing.flags.flagged and "insult" not in swearing.flags.flagged


def test_final_without_words_uses_the_text(filters_only):
    final = Final("s", "mono", "s/mono/0", 0, "call me at five five five one two three four five six seven", start=1.0, end=3.0)
    out = filters_only.enrich(new_state(), final)
    (span,) = out.flags.spans
    assert span.kind == "phone" and (span.start, span.end) == (1.0, 3.0)


def test_batch_matches_one_by_one(filters_only):
    finals = [_final("hello there"), _final("my ssn is one two three four five six seven eight nine", channel="agent")]
    one = [filters_only.enrich(new_state(), f) for f in finals]
    batch = filters_only.enrich_batch([new_state(), new_state()], finals)
    assert one == batch
    with pytest.raises(ValueError, match="one state per final"):
        filters_only.enrich_batch([new_state()], finals)


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_default_enrich_adds_intent():
    out = enrich(new_state(), _final("i still have not received my new card"))
    assert out.intent is not None and out.intent.label == "card_arrival" and len(out.intent.top_k) == 3


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_enriched_intent_says_when_to_confirm():
    sure = enrich(new_state(), _final("i still have not received my new card")).intent
    vague = enrich(new_state(), _final("account")).intent  # terminate_account at 0.50
    assert sure.label == "card_arrival" and not sure.needs_confirmation
    assert vague.label != "out_of_scope" and vague.needs_confirmation


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_intent_reads_the_words_around_a_redacted_number():
    """The recogniser masks a card number in the final itself; the marks are no words to classify."""
    assert enrich(new_state(), _final("#### ### ### ### ### ### ### ###")).intent is None
    masked = enrich(new_state(), _final("i lost my card the number is #### ### ### ###")).intent
    assert masked.label == enrich(new_state(), _final("i lost my card the number is")).intent.label
    assert masked.label == "lost_or_stolen_card"


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_toxicity_reads_the_intent_embedding(filters_only):
    hateful, clean = _final("women are too stupid to vote"), _final("my gay son needs an account")
    assert "toxicity" in enrich(new_state(), hateful).flags.flagged  # the embedding head catches it
    assert "toxicity" not in filters_only.enrich(new_state(), hateful).flags.flagged  # the n-grams alone do not
    assert "toxicity" not in enrich(new_state(), clean).flags.flagged


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_polite_call_turns_are_not_toxic():
    """The clean call turns written for measurement (greetings, thanks, holds, closings): the sample
    call's closing "thank you very much" was flagged once, and 8 of these 80 were."""
    import csv

    from models.toxicity_train import CALL_TURNS

    with CALL_TURNS.open(newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    flagged = [t for t in texts if "toxicity" in enrich(new_state(), _final(t)).flags.flagged]
    assert "thank you very much" in texts and "thank you very much" not in flagged
    assert len(flagged) <= 0.05 * len(texts), flagged


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
@pytest.mark.parametrize("name", ["GROUP_HATE", "GROUP_HATE_UNSEEN"])
def test_hate_against_groups_in_clean_words_is_flagged(name):
    """The hand-written group-hate sets (measured on, never trained on): Davidson's tweets alone
    taught the filter 40% and 42% of their hate, the generated group sets 77% and 82.5%; their clean
    lines name the same groups ("my brother is gay and getting married next month") and must stay
    clean."""
    import csv

    import models.toxicity_train

    with getattr(models.toxicity_train, name).open(newline="") as f:
        rows = list(csv.DictReader(f))
    flagged = [r for r in rows if "toxicity" in enrich(new_state(), _final(r["text"])).flags.flagged]
    hate = sum(r["label"] == "1" for r in rows)
    assert hate >= 40 and sum(r["label"] == "1" for r in flagged) >= 0.6 * hate
    assert sum(r["label"] == "0" for r in flagged) <= 2, [r["text"] for r in flagged if r["label"] == "0"]



@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_threats_that_name_no_harm_are_sometimes_flagged_and_their_words_elsewhere_never():
    """The hand-written threat set (never trained on) is the filter's weakest case: it finds 6 of
    its 40 threats and advances (generated threats of the same kind were tried and not kept:
    docs/text-intelligence.md). None of its 40 clean lines in the same words ("i'm parked outside
    the branch can i still come in") may be flagged."""
    import csv

    from models.toxicity_train import AGENT_THREATS_UNSEEN

    with AGENT_THREATS_UNSEEN.open(newline="") as f:
        rows = list(csv.DictReader(f))
    flagged = [r for r in rows if "toxicity" in enrich(new_state(), _final(r["text"])).flags.flagged]
    assert sum(r["label"] == "1" for r in flagged) >= 5
    assert not [r["text"] for r in flagged if r["label"] == "0"]

@pytest.mark.parametrize(
    "module", ["operators.intent", "operators.content", "operators.abuse_lexicon", "operators.redaction", "operators.enrich"]
)
def test_serving_modules_import_no_torch_or_sklearn(module):
    code = (
        f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'sklearn', 'sentence_transformers')]; print(bad); sys.exit(bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"{module} imported {proc.stdout.strip()} {proc.stderr[-500:]}"


def _run(add, run, argv, capsys) -> dict:
    parser = argparse.ArgumentParser()
    add(parser)
    assert run(parser.parse_args(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_filter_json_contract(tmp_path, capsys):
    path = tmp_path / "f.csv"
    path.write_text(
        "text,label\n"
        "you are a stupid bitch,1\n"
        "shut the fuck up you idiot,1\n"
        "i want to check my balance,0\n"
        '"hello, how are you today",0\n'
    )
    m = _run(text_eval.add_filter_arguments, text_eval.run_filter, ["--csv", str(path), "--json"], capsys)
    assert set(m) == {"precision", "recall", "f1", "n"} and m["n"] == 4
    assert m == text_eval.eval_filter(path)
    assert m["recall"] == 1.0 and m["precision"] == 1.0


def test_eval_filter_per_category(tmp_path, capsys):
    path = tmp_path / "f.csv"
    path.write_text(
        "text,label,category\n"
        "you are a stupid bitch,1,insult\n"
        "i want to check my balance,1,insult\n"
        "i want to close my account,0,clean\n"
        "what is my balance,0,clean\n"
    )
    m = _run(text_eval.add_filter_arguments, text_eval.run_filter, ["--csv", str(path), "--json"], capsys)
    assert set(m) == {"precision", "recall", "f1", "n", "categories"} and list(m["categories"]) == ["insult", "clean"]
    assert m["categories"]["insult"] == {"n": 2, "positives": 2, "flagged": 1, "precision": 1.0, "recall": 0.5,
                                         "false_flags": None}
    assert m["categories"]["clean"] == {"n": 2, "positives": 0, "flagged": 0, "precision": None, "recall": None,
                                        "false_flags": 0.0}


def test_eval_filter_rejects_bad_csvs_with_one_line(tmp_path, capsys):
    from stream.cli import main
    from stream.errors import InputError

    (tmp_path / "bad.csv").write_text("sentence,label\nhi,0\n")
    (tmp_path / "empty.csv").write_text("text,label\n")
    (tmp_path / "labels.csv").write_text("text,label\nhi,maybe\n")
    with pytest.raises(InputError, match="expected CSV columns"):
        text_eval.eval_filter(tmp_path / "bad.csv")
    for name, reason in [("bad.csv", "expected CSV columns"), ("empty.csv", "no rows to score"),
                         ("labels.csv", "expected labels 0 or 1"), ("absent.csv", "no such file")]:
        assert main(["eval-filter", "--csv", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("callstream eval-filter: error: ") and reason in err and "Traceback" not in err


@pytest.mark.skipif(not ENCODER_BUILT, reason="sentence encoder not built: run `python -m models.encoder_export`")
def test_eval_intent_json_contract(tmp_path, capsys):
    path = tmp_path / "i.csv"
    path.write_text(
        "text,category\n"
        "I am still waiting on my card?,card_arrival\n"
        "How do I top up with Apple Pay?,apple_pay_or_google_pay\n"
        "what's the capital of peru,out_of_scope\n"
    )
    m = _run(text_eval.add_intent_arguments, text_eval.run_intent, ["--csv", str(path), "--json"], capsys)
    assert {"accuracy", "macro_f1", "n"} <= set(m) and m["n"] == 3
    assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["oos_rate"] <= 1.0


def test_number_formatted_finals_are_redacted_too(filters_only):
    from operators.itn import format_final

    spoken = _final("my card is four one one one one one one one one one one one one one one one expires oh four twenty six")
    formatted = format_final(spoken)
    assert len(formatted.words) < len(spoken.words)  # the digits were merged into written numbers
    out = filters_only.enrich(new_state(), formatted)
    assert [s.kind for s in out.flags.spans] == ["card", "expiry"]
    card = out.flags.spans[0]
    assert (card.start, card.end) == (spoken.words[3].start, spoken.words[18].end)
