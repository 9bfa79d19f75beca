"""models.train.lm: the general-English LM that set-up builds."""

import pytest

from models.train.lm import ensure_general_lm
from stream.cli import main

pytest.importorskip("pocketsphinx", reason="pocketsphinx is in the [train] extra")


def test_the_general_lm_build_is_deterministic(tmp_path):
    a = ensure_general_lm(tmp_path / "a")
    b = ensure_general_lm(tmp_path / "b")
    for name in ("lm.bin", "unigrams.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left behind
    assert sorted(p.name for p in a.iterdir()) == ["lm.bin", "unigrams.txt"]


def test_a_failed_set_up_prints_one_line_with_the_retry(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("CALLSTREAM_CACHE_DIR", str(blocker / "cache"))
    assert main(["build-lm", "--general"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("callstream build-lm: error: building the general-English LM failed: ")
    assert f"retry with `rm -rf {blocker / 'cache' / 'lm-general-en-3'} && make setup`" in err
