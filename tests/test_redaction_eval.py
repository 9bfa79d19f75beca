"""The leak test of redaction: the generated adversarial set, the CSV and ``callstream eval-redaction``."""

from __future__ import annotations

import subprocess
import sys

from models.redaction_eval import evaluate, generate, leaks, read_csv, write_csv


def test_a_leak_is_six_digits_of_the_secret_in_any_spoken_or_written_form():
    secret = "4111222233334444"
    assert leaks("it is four one one one two two", secret)
    assert leaks("it is for one won one to two", secret)
    assert leaks("forty one eleven twenty two", secret)
    assert leaks("4111-2222", secret)
    assert not leaks("four one one one two", secret)
    assert not leaks("it is #### ### ### ###", secret)


def test_the_adversarial_set_leaks_nothing_after_redaction_and_plenty_before():
    calls = generate(1000, seed=3)
    result = evaluate(calls)
    assert result["calls"] == 1000
    assert result["raw_leaking_calls"] > 700
    assert result["leaking_finals"] == 0 and result["leaking_calls"] == 0
    # Turned off, redaction lets every raw leak through.
    off = evaluate(calls, modes=())
    assert off["leaking_finals"] == off["raw_leaking_finals"]


def test_the_csv_round_trips_and_the_command_reports_leaks(tmp_path):
    calls = generate(50, seed=1)
    path = tmp_path / "set.csv"
    write_csv(calls, path)
    assert read_csv(path) == calls
    ok = subprocess.run([sys.executable, "-m", "stream.cli", "eval-redaction", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "leaking_finals: 0" in ok.stdout
    raw = subprocess.run([sys.executable, "-m", "stream.cli", "eval-redaction", str(path), "--modes", "email"],
                         capture_output=True, text=True)
    assert raw.returncode == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("words,digits\nhello,1234567\n")
    out = subprocess.run([sys.executable, "-m", "stream.cli", "eval-redaction", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "expected a CSV with the columns text and secret" in out.stderr


def test_kafka_calls_choose_their_redaction_in_a_header():
    from stream.kafka import _redact_modes

    assert _redact_modes([("cs-encoding", b"pcm16")]) is None
    assert _redact_modes([("cs-redact", b"pci, phone")]) == ("pci", "phone")
    assert _redact_modes([("cs-redact", b"none")]) == ()
