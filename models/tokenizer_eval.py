"""``callstream compare-tokenizers``: characters or SentencePiece, chosen by measured WER.

Training the streaming Conformer once per tokenizer takes hours here, so the
comparison runs where it is cheap and fair: the same CTC head (two
convolutions) is fitted on the same frozen teacher features (Whisper tiny.en's
encoder at 25 Hz, ``callstream distill-targets``), once over characters and
once over each SentencePiece unigram vocabulary, for the same epochs, and
scored on the same held-out twentieth of the utterances with greedy CTC.
SentencePiece is trained on the training transcripts only.

    callstream compare-tokenizers --teacher runs/teacher --vocab 128 256 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from models.data import load_manifest
from models.teacher import CharUnits, fit_ctc_head

__all__ = ["PieceUnits", "add_arguments", "compare", "run"]

ROOT = Path(__file__).resolve().parents[1]


class PieceUnits:
    """SentencePiece unigram pieces; id 0 is the CTC blank, piece i is id i + 1."""

    def __init__(self, texts: list[str], vocab_size: int) -> None:
        import sentencepiece as spm

        with tempfile.TemporaryDirectory() as tmp:
            corpus = Path(tmp) / "text.txt"
            corpus.write_text("\n".join(texts) + "\n")
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(Path(tmp) / "sp"), vocab_size=vocab_size, model_type="unigram",
                character_coverage=1.0, bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2, hard_vocab_limit=False,
            )
            self.sp = spm.SentencePieceProcessor(model_file=str(Path(tmp) / "sp.model"))
        self.size = self.sp.get_piece_size() + 1

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.sp.decode([i - 1 for i in ids]).split())


def compare(teacher: Path, manifest: Path, vocab_sizes: list[int], epochs: int, threads: int = 1) -> list[dict]:
    utts = [u for u in load_manifest(manifest) if u.text]
    rows = []
    for name, units in [("characters", CharUnits()),
                        *((f"sentencepiece-{v}", PieceUnits([u.text for u in utts], v)) for v in vocab_sizes)]:
        _, metrics = fit_ctc_head(teacher, utts, units, epochs, threads)
        rows.append({"tokenizer": name, "units": units.size, **metrics})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", type=Path, default=ROOT / "runs" / "teacher", help="distill-targets output")
    p.add_argument("--manifest", type=Path, default=ROOT / "runs" / "corpus" / "train" / "manifest.tsv",
                   help="the transcripts of the teacher's utterances")
    p.add_argument("--vocab", type=int, nargs="+", default=[128, 256], help="SentencePiece vocabulary sizes")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    rows = compare(args.teacher, args.manifest, args.vocab, args.epochs, args.threads)
    print(f"{'tokenizer':>18}  {'units':>5}  {'held-out WER':>12}  {'CER':>6}")
    for r in rows:
        print(f"{r['tokenizer']:>18}  {r['units']:>5}  {r['held_out_wer']:>12.4f}  {r['held_out_cer']:>6.4f}")
    return 0
