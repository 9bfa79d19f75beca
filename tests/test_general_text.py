"""General-English training text from Debian's wordnet-base and fortunes."""

from pathlib import Path

import pytest

from models.train.general_text import FORTUNES_DIR, WORDNET_DIR, general_sentences

pytestmark = pytest.mark.skipif(not (WORDNET_DIR.is_dir() and FORTUNES_DIR.is_dir()),
                                reason="wordnet-base and fortunes are not installed (make system-packages)")


def test_sentences_are_normalised_deduplicated_and_stable():
    sentences = general_sentences()
    assert len(sentences) > 30000
    assert sentences == sorted(set(sentences))
    allowed = set(" 'abcdefghijklmnopqrstuvwxyz")
    assert all(set(s) <= allowed and 3 <= len(s.split()) <= 20 for s in sentences)
    assert "the team is a unit" in sentences  # a WordNet example


def test_a_missing_package_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        general_sentences(wordnet=tmp_path / "nope")
