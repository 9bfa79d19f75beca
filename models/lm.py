"""KenLM language models: ``callstream build-lm`` and the bundled domain LM recipe.

``lmplz`` and ``build_binary`` are not in the kenlm wheel (its Python module
only queries models); ``make kenlm`` builds them from the kenlm sdist into
``.venv/kenlm/bin``. ``KENLM_BIN`` overrides where they are looked up.

The general-English component comes from the ``pocketsphinx`` wheel, whose
en-us LM (72k words) is written out as ARPA at set-up: its writer stops
before the trigram section, so the unigrams and bigrams are kept, cleaned to
the acoustic model's alphabet, and binarized into the cache directory. The
decoder mixes it with the domain LM (pyctcdecode's ``MultiLanguageModel``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from models.corpus import load_intent_sentences, normalize_text, plan_utterances
from models.runtime import ASSETS, default_general_lm

__all__ = [
    "add_arguments",
    "build_lm",
    "default_general_lm",
    "domain_text",
    "ensure_general_lm",
    "general_english_arpa",
    "kenlm_tool",
    "run",
]

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
        _binarize(arpa, binary)
    finally:
        corpus.unlink()
    (out_dir / "unigrams.txt").write_text("\n".join(sorted(vocab)) + "\n")
    return binary


def _binarize(arpa: Path, binary: Path) -> None:
    # A quantized trie is about a third of the default probing table and decodes the same.
    subprocess.run([str(kenlm_tool("build_binary")), "-a", "22", "-q", "8", "-b", "8", "trie", str(arpa),
                    str(binary)], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


_WORD = re.compile(r"[a-z']+|<s>|</s>|<unk>")
_WRITE_SPHINX_ARPA = """
import os, sys, pocketsphinx
# LogMath() without a base converts the model's scores to garbage (about -1e30); 1.0001 is sphinx's base.
model = pocketsphinx.NGramModel(pocketsphinx.Config(), pocketsphinx.LogMath(1.0001),
                                os.path.join(pocketsphinx.get_model_path(), "en-us", "en-us.lm.bin"))
model.write(sys.argv[1], 1)
"""


def general_english_arpa(out: Path) -> Path:
    """pocketsphinx's en-us unigrams and bigrams as a clean order-2 ARPA at ``out``.

    The writer runs in a child process because it dies in the trigram
    section; whatever it wrote up to its last whole bigram line is used.
    N-grams with words outside the acoustic alphabet (a-z and ') are dropped.
    """
    raw = out.with_suffix(".raw")
    proc = subprocess.run([sys.executable, "-c", _WRITE_SPHINX_ARPA, str(raw)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not raw.exists():
        raise RuntimeError(f"pocketsphinx wrote no ARPA (exit {proc.returncode}): {proc.stderr.decode()[-500:]}")
    grams: dict[int, list[str]] = {1: [], 2: []}
    order = 0
    with open(raw, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # the partial last line of a writer that died
            line = line.strip()
            if line.startswith("\\"):
                order = int(line[1]) if line[1:2].isdigit() else 0
                if order > 2:
                    break
                continue
            parts = line.split()
            if order not in grams or len(parts) < order + 1:
                continue
            words = [w.lower() for w in parts[1 : order + 1]]
            if not -99.0 <= float(parts[0]) <= 0.0:
                raise RuntimeError(f"pocketsphinx's ARPA has a log10 probability out of range: {line!r}")
            if all(_WORD.fullmatch(w) for w in words):
                # bigrams are the highest order here: they carry no backoff weight
                tail = parts[order + 1 : order + 2] if order == 1 else []
                grams[order].append("\t".join([parts[0], " ".join(words), *tail]))
    raw.unlink()
    if not grams[2]:
        raise RuntimeError("pocketsphinx's ARPA had no usable bigrams")
    with open(out, "w") as f:
        f.write(f"\\data\\\nngram 1={len(grams[1])}\nngram 2={len(grams[2])}\n")
        for n in (1, 2):
            f.write(f"\n\\{n}-grams:\n")
            f.write("\n".join(grams[n]) + "\n")
        f.write("\n\\end\\\n")
    return out


def ensure_general_lm(out_dir: Path | None = None, *, force: bool = False) -> Path:
    """Build the general-English LM (lm.bin, unigrams.txt) once; return its folder."""
    out_dir = out_dir or default_general_lm()
    if not force and (out_dir / "lm.bin").is_file() and (out_dir / "unigrams.txt").is_file():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    arpa = general_english_arpa(out_dir / "lm.arpa")
    vocab = set()
    with open(arpa) as f:
        section = ""
        for line in f:
            if line.startswith("\\"):
                section = line.strip()
            elif section == "\\1-grams:" and line.strip():
                vocab.add(line.split("\t")[1])
    _binarize(arpa, out_dir / "lm.bin")
    arpa.unlink()
    words = sorted(vocab - {"<s>", "</s>", "<unk>"})
    (out_dir / "unigrams.txt").write_text("\n".join(words) + "\n")
    return out_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", type=Path, nargs="*", default=[],
                   help="text files, one sentence per line (normalised like transcripts)")
    p.add_argument("--domain", action="store_true", help="add the bundled call-center domain text")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", type=Path, default=ASSETS / "lm", help="output folder (lm.bin, lm.arpa, unigrams.txt)")
    p.add_argument("--keep-arpa", action="store_true", help="keep lm.arpa next to the binary")
    p.add_argument("--general", action="store_true",
                   help="build the general-English LM from the pocketsphinx wheel into the cache (set-up does)")


def run(args: argparse.Namespace) -> int:
    if args.general:
        print(f"general-English LM ready in {ensure_general_lm()}")
        return 0
    if not args.text and not args.domain:
        raise SystemExit("build-lm: give --text FILE... and/or --domain (or --general)")
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
