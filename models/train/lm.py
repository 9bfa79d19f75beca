"""KenLM language models: ``callstream build-lm`` and the bundled domain LM recipe.

``lmplz`` and ``build_binary`` are not in the kenlm wheel (its Python module
only queries models); ``make kenlm`` builds them from the kenlm sdist into
``.venv/kenlm/bin``. ``KENLM_BIN`` overrides where they are looked up.

The general-English component is the en-us trigram LM of the ``pocketsphinx``
wheel (72k words). ``models.train.sphinx_lm`` reads its binary trie format and
writes it as ARPA at set-up, restricted to the acoustic model's alphabet; it
is binarized into the cache directory. The decoder mixes it with the domain
LM (pyctcdecode's ``MultiLanguageModel``).
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

from tqdm import tqdm

from models.train.corpus import load_intent_sentences, normalize_text, plan_utterances
from models.runtime import ASSETS, default_general_lm
from models.train.sphinx_lm import SphinxLM, read_sphinx_lm, restrict_vocabulary, write_arpa
from stream.errors import CallstreamError, ModelError

__all__ = [
    "add_arguments",
    "build_lm",
    "default_general_lm",
    "domain_text",
    "ensure_general_lm",
    "general_english_arpa",
    "kenlm_tool",
    "run",
    "sphinx_en_us_lm",
]

ROOT = Path(__file__).resolve().parents[2]


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
    """KenLM's build_binary; a failure raises ``ModelError`` with its last message."""
    # A quantized trie is about a third of the default probing table and decodes the same.
    try:
        tool = kenlm_tool("build_binary")
    except FileNotFoundError as e:
        raise ModelError(str(e)) from None
    proc = subprocess.run([str(tool), "-a", "22", "-q", "8", "-b", "8", "trie", str(arpa), str(binary)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    if proc.returncode != 0:
        # The reason is the last line that is neither a progress bar nor the closing "ERROR".
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines()
                 if set(ln.strip()) - set("*-0123456789") and ln.strip() != "ERROR"]
        raise ModelError(f"KenLM's build_binary failed on {arpa.name} (exit {proc.returncode}): "
                         f"{lines[-1] if lines else 'no message'}")


# The acoustic model spells words with a-z and the apostrophe; KenLM needs the sentence markers.
_WORD = re.compile(r"[a-z']+|<s>|</s>|<unk>")


def sphinx_en_us_lm() -> Path:
    """pocketsphinx's en-us trigram LM (72k words), shipped in its wheel."""
    try:
        import pocketsphinx
    except ImportError:
        raise ModelError("pocketsphinx is not installed (it is in the [train] extra: "
                         "pip install -e '.[train]')") from None
    return Path(pocketsphinx.get_model_path()) / "en-us" / "en-us.lm.bin"


def general_english_arpa(out: Path, *, verbose: bool = False, source: Path | None = None) -> tuple[Path, list[str]]:
    """pocketsphinx's en-us LM as an ARPA file at ``out``, in the acoustic model's alphabet.

    All its orders are kept (trigrams, with backoffs). N-grams with a word
    outside a-z and ' are dropped (sentence markers excepted), and so are
    n-grams whose context or suffix is dropped (``restrict_vocabulary``).
    Returns the ARPA path and its sorted words, sentence markers left out.
    """
    source = source or sphinx_en_us_lm()
    try:
        full = read_sphinx_lm(source)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read pocketsphinx's LM: {e}") from None
    _say(verbose, f"read {source}: {_counts(full)}")
    lm = restrict_vocabulary(full, lambda w: _WORD.fullmatch(w) is not None)
    _say(verbose, f"kept the n-grams spelled with a-z and ': {_counts(lm)}")
    total = sum(len(g.prob) for g in lm.grams)
    with tqdm(total=total, desc="  writing ARPA", unit=" n-grams", unit_scale=True, file=sys.stdout,
              disable=not verbose, mininterval=1.0) as bar:
        write_arpa(lm, out, progress=bar.update)
    words = sorted(w for w in lm.vocab if w not in ("<s>", "</s>", "<unk>"))
    return out, words


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"  {message}", flush=True)


def _counts(lm: SphinxLM) -> str:
    names = {1: "words", 2: "bigrams", 3: "trigrams"}
    return ", ".join(f"{len(g.prob):,} {names.get(n, f'{n}-grams')}" for n, g in enumerate(lm.grams, start=1))


def ensure_general_lm(out_dir: Path | None = None, *, force: bool = False, verbose: bool = False) -> Path:
    """Build the general-English LM (lm.bin, unigrams.txt) once; return its folder.

    The build goes to a temporary folder beside ``out_dir`` that replaces it
    only once complete, so an interrupted build leaves nothing that looks
    built. The same wheel gives the same bytes. Failures raise ``ModelError``.
    """
    out_dir = out_dir or default_general_lm()
    if not force and (out_dir / "lm.bin").is_file() and (out_dir / "unigrams.txt").is_file():
        return out_dir
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
        work.chmod(0o755)  # mkdtemp's 0700 would stay on the renamed folder
    except OSError as e:
        raise ModelError(f"cannot create {out_dir.parent}: {e.strerror or e}") from None
    try:
        arpa, words = general_english_arpa(work / "lm.arpa", verbose=verbose)
        _say(verbose, "binarizing with KenLM's build_binary (8-bit quantised trie)")
        _binarize(arpa, work / "lm.bin")
        arpa.unlink()
        (work / "unigrams.txt").write_text("\n".join(words) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
    except OSError as e:
        raise ModelError(f"cannot write the general-English LM in {out_dir.parent}: {e}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", type=Path, nargs="*", default=[],
                   help="text files, one sentence per line (normalised like transcripts)")
    p.add_argument("--domain", action="store_true", help="add the bundled call-center domain text")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--out", type=Path, default=ASSETS / "lm", help="output folder (lm.bin, lm.arpa, unigrams.txt)")
    p.add_argument("--keep-arpa", action="store_true", help="keep lm.arpa next to the binary")
    p.add_argument("--general", action="store_true",
                   help="build the general-English LM from pocketsphinx's en-us LM into the cache (set-up does)")


def run(args: argparse.Namespace) -> int:
    if args.general:
        return _run_general()
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


def _run_general() -> int:
    out_dir = default_general_lm()
    if (out_dir / "lm.bin").is_file() and (out_dir / "unigrams.txt").is_file():
        print(f"general-English LM already built in {out_dir}")
        return 0
    print(f"building the general-English LM in {out_dir} from pocketsphinx's en-us LM", flush=True)
    retry = f"retry with `rm -rf {out_dir} && make setup`"
    try:
        ensure_general_lm(out_dir, verbose=True)
    except CallstreamError as e:
        raise ModelError(f"building the general-English LM failed: {e}; {retry}") from None
    except Exception as e:  # set-up prints one line, never a traceback
        raise ModelError(f"building the general-English LM failed: {type(e).__name__}: {e}; {retry}") from None
    size = (out_dir / "lm.bin").stat().st_size / 1e6
    print(f"general-English LM ready in {out_dir} (lm.bin {size:.1f} MB)")
    return 0
