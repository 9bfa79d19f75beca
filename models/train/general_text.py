"""General-English sentences for the synthetic-speech corpus, from Debian packages.

The intent corpora are short requests about banks, alarms and music; a
recogniser trained on their words alone misspells everything else a caller
says. Two Debian packages carry plain English that installs offline:

- ``wordnet-base``: WordNet 3.0's example sentences, the quoted parts of its
  glosses (``"the team is a unit"``), about 48k of them over every word sense;
- ``fortunes``: the fortune cookie files, quotations and jokes, split into
  sentences.

Lines are normalised to the acoustic alphabet with the corpus recipe's own
``normalize_text`` and kept when they have 3 to ``MAX_WORDS`` words. The
result is sorted and deduplicated, so it depends only on the packages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from models.train.corpus import MAX_WORDS, normalize_text

__all__ = ["FORTUNES_DIR", "WORDNET_DIR", "general_sentences"]

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# fortunes-off is offensive by design, and these files are mostly ASCII art, code or verse.
_FORTUNE_SKIP = frozenset({"ascii-art", "art", "computers", "debian", "linux", "linuxcookie", "perl", "songs-poems",
                           "paradoxum", "startrek", "zippy", "riddles"})
_QUOTED = re.compile(r'"([^"]{8,200})"')
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_MIN_WORDS = 3


def _wordnet_examples(root: Path) -> Iterator[str]:
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        with open(root / name, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith("  "):  # the licence header
                    continue
                _, _, gloss = line.partition(" | ")
                yield from _QUOTED.findall(gloss)


def _fortune_sentences(root: Path) -> Iterator[str]:
    for path in sorted(root.iterdir()):
        if path.suffix or path.name in _FORTUNE_SKIP or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for entry in text.split("\n%\n"):
            # Attributions ("-- Mark Twain") and indented verse are not sentences a caller says.
            body = " ".join(ln.strip() for ln in entry.splitlines() if ln.strip() and not ln.strip().startswith("--"))
            yield from _SENTENCE_END.split(body)


def general_sentences(*, wordnet: Path = WORDNET_DIR, fortunes: Path = FORTUNES_DIR) -> list[str]:
    """Normalised, deduplicated, sorted general-English sentences (3 to ``MAX_WORDS`` words).

    Raises FileNotFoundError naming the Debian package when one is missing.
    """
    for folder, package in ((wordnet, "wordnet-base"), (fortunes, "fortunes")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: install the Debian package {package} (make setup does)")
    texts: set[str] = set()
    for raw in (*_wordnet_examples(wordnet), *_fortune_sentences(fortunes)):
        ascii_only = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode()
        if any(c in ascii_only for c in "<>{}[]|\\_@#=~^*"):  # code, markup, e-mail: not speech
            continue
        try:
            text = normalize_text(ascii_only)
        except ValueError:  # a number too long to spell out: nobody says it
            continue
        if text and _MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            texts.add(text)
    return sorted(texts)
