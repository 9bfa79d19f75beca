"""KenLM language models: ``callstream build-lm`` and the bundled domain LM recipe.

``lmplz`` and ``build_binary`` are not in the kenlm wheel (its Python module
only queries models); ``make kenlm`` builds them from the kenlm sdist into
``.venv/kenlm/bin``. ``KENLM_BIN`` overrides where they are looked up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from models.corpus import load_intent_sentences, normalize_text, plan_utterances
from models.runtime import ASSETS

__all__ = ["add_arguments", "build_lm", "domain_text", "kenlm_tool", "run"]

ROOT = Path(__file__).resolve().parents[1]


def kenlm_tool(name: str) -> Path:
    """Path of ``lmplz`` or ``build_binary``; raises with the fix if missing."""
    candidates = [Path(os.environ["KENLM_BIN"]) / name] if os.environ.get("KENLM_BIN") else []
    candidates += [ROOT / ".venv" / "kenlm" / "bin" / name, Path(sys.prefix) / "kenlm" / "bin" / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise FileNotFoundError(f"KenLM's {name} is not built; run `make kenlm` (or set KENLM_BIN)")


def domain_text(n_generated: int = 60000, seed: int = 1) -> list[str]:
    """Call-center sentences: intent training texts plus generated numbers, amounts, dates, names."""
    sentences = load_intent_sentences()
    generated = [u.text for u in plan_utterances(n_generated, seed, sentences)]
    return sentences + generated


def build_lm(lines: Iterable[str], out_dir: Path, *, order: int = 3, memory: str = "100M") -> Path:
    """Normalise ``lines``, run lmplz and build_binary. Writes lm.arpa, lm.bin and unigrams.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab: set[str] = set()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for line in lines:
            text = normalize_text(line)
            if text:
                f.write(text + "\n")
                vocab.update(text.split())
        corpus = Path(f.name)
    if not vocab:
        raise ValueError("no text left after normalisation")
    arpa, binary = out_dir / "lm.arpa", out_dir / "lm.bin"
    try:
        with open(corpus) as src, open(arpa, "w") as dst:
            subprocess.run(
                [str(kenlm_tool("lmplz")), "-o", str(order), "-S", memory, "--discount_fallback"],
                stdin=src, stdout=dst, stderr=subprocess.PIPE, check=True,
            )
        # A quantized trie is about a third of the default probing table and decodes the same.
        subprocess.run([str(kenlm_tool("build_binary")), "-a", "22", "-q", "8", "-b", "8", "trie", str(arpa),
                        str(binary)], check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        corpus.unlink()
    (out_dir / "unigrams.txt").write_text("\n".join(sorted(vocab)) + "\n")
    return binary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", type=Path, nargs="*", default=[],
                   help="text files, one sentence per line (normalised like transcripts)")
    p.add_argument("--domain", action="store_true", help="add the bundled call-center domain text")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", type=Path, default=ASSETS / "lm", help="output folder (lm.bin, lm.arpa, unigrams.txt)")
    p.add_argument("--keep-arpa", action="store_true", help="keep lm.arpa next to the binary")


def run(args: argparse.Namespace) -> int:
    if not args.text and not args.domain:
        raise SystemExit("build-lm: give --text FILE... and/or --domain")
    lines: list[str] = []
    for path in args.text:
        lines += path.read_text(encoding="utf-8").splitlines()
    if args.domain:
        lines += domain_text()
    binary = build_lm(lines, args.out, order=args.order)
    if not args.keep_arpa:
        (args.out / "lm.arpa").unlink()
    print(f"wrote {binary} ({binary.stat().st_size / 1e6:.1f} MB) and {args.out / 'unigrams.txt'}")
    return 0
