"""``callstream eval-intent`` and ``callstream eval-filter``: score the bundled text models on a user's CSV.

* ``eval-intent --csv FILE [--json]``: columns ``text`` and ``category``.
  Prints accuracy, macro-F1 and the out-of-scope rate; with ``--json`` the
  last line is ``{"accuracy", "macro_f1", "oos_rate", "n"}``. A category
  of ``out_of_scope`` (or CLINC's ``oos``) is right when the model abstains.
* ``eval-filter --csv FILE [--json]``: columns ``text`` and ``label``
  (1 offensive or toxic, 0 not), and optionally ``category``. Prints
  precision, recall and F1 of the toxicity flag; with ``--json`` the last
  line is ``{"precision", "recall", "f1", "n"}``. With a ``category``
  column it also prints, per category, the precision and recall of the
  flag on that category's rows and the share of its label-0 rows flagged
  (``false_flags``), and the JSON gains ``"categories": {name: {...}}``.
  A figure without rows to count (recall of a category with no label 1)
  is ``null``.

Texts are normalised the way finals look (``operators.spoken_form.normalize_text``)
unless ``--raw`` is given, because the models run on ASR output.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from operators.spoken_form import normalize_text
from models.intent_train import intent_metrics
from models.toxicity_train import prf
from operators.content import ToxicityModel
from operators.intent import (
    DEFAULT_ENCODER,
    ENCODERS,
    IntentConfig,
    SentenceEncoder,
    default_encoder_dir,
    load_classifier,
)
from stream.errors import InputError, ModelError

__all__ = [
    "add_filter_arguments",
    "add_intent_arguments",
    "category_figures",
    "eval_filter",
    "eval_intent",
    "run_filter",
    "run_intent",
]


def _read(csv_path: Path, columns: tuple[str, str]) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise InputError(f"{csv_path}: no such file")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"expected CSV columns {list(columns)} in {csv_path}, got {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise InputError(f"{csv_path}: no rows to score")
    return rows


def eval_intent(
    csv_path: Path, *, head: Path | None = None, encoder: str = DEFAULT_ENCODER, encoder_dir: Path | None = None,
    normalize: bool = True,
) -> dict[str, float]:
    """Accuracy, macro-F1, out-of-scope rate and n of the intent model on a ``text,category`` CSV."""
    rows = _read(csv_path, ("text", "category"))
    classifier = load_classifier(IntentConfig(encoder=encoder, encoder_dir=encoder_dir, head=head, threads=0))
    texts = [normalize_text(r["text"]) if normalize else r["text"] for r in rows]
    x = classifier.encoder.encode(texts)
    return intent_metrics(classifier.head, x, [r["category"] for r in rows])


def eval_filter(
    csv_path: Path, *, model: Path | None = None, encoder_dir: Path | None = None, normalize: bool = True
) -> dict[str, float]:
    """Precision, recall, F1 and n of the toxicity flag on a ``text,label[,category]`` CSV (as the enricher
    flags it: with the sentence-embedding head when the model has one and its encoder is built), and
    ``categories`` (see ``category_figures``) when the CSV has a ``category`` column."""
    rows = _read(csv_path, ("text", "label"))
    tox = ToxicityModel.load(model)
    try:
        y = np.array([int(r["label"]) for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise InputError(f"expected labels 0 or 1 in {csv_path}: {exc}") from None
    if not set(np.unique(y)) <= {0, 1}:
        raise InputError(f"expected labels 0 or 1 in {csv_path}, got {sorted(set(y.tolist()))}")
    texts = [normalize_text(r["text"]) if normalize else r["text"] for r in rows]
    x: np.ndarray | list[None] = [None] * len(texts)
    if tox.embedding_coef is not None:
        try:
            encoder = SentenceEncoder(encoder_dir or default_encoder_dir(), threads=0)
        except ModelError as exc:
            print(f"eval-filter: n-gram model alone, the sentence encoder does not load: {exc}", file=sys.stderr)
        else:
            if tox.uses_embeddings_of(encoder.name):
                x = encoder.encode(texts)
    pred = np.array([tox.score(t, e) >= tox.threshold_for(e) for t, e in zip(texts, x)], dtype=np.int64)
    out: dict = prf(y, pred)
    if "category" in rows[0]:
        out["categories"] = category_figures([r["category"] for r in rows], y, pred)
    return out


def category_figures(categories: Sequence[str], y: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """Per category (in first-seen order): ``n``, ``positives``, ``flagged``, and the flag's ``precision``
    and ``recall`` on that category's rows and ``false_flags`` (flagged share of its label-0 rows);
    ``None`` where there is nothing to divide by. ``y`` and ``pred`` are int arrays (N,) of 0/1."""
    out: dict[str, dict] = {}
    cats = np.array(categories, dtype=object)
    for name in dict.fromkeys(categories):
        sel = cats == name
        yc, pc = y[sel], pred[sel]
        tp, flagged, pos, neg = int(np.sum(yc & pc)), int(pc.sum()), int(yc.sum()), int(np.sum(yc == 0))
        out[name] = {
            "n": int(sel.sum()),
            "positives": pos,
            "flagged": flagged,
            "precision": tp / flagged if flagged else None,
            "recall": tp / pos if pos else None,
            "false_flags": (flagged - tp) / neg if neg else None,
        }
    return out


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--csv", type=Path, required=True, help="the CSV file to score")
    parser.add_argument("--json", action="store_true", help="last line: the figures as one JSON object")
    parser.add_argument("--raw", action="store_true", help="score texts as they are, without ASR-style normalisation")


def add_intent_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--head", type=Path, default=None, help="intent head .npz (default: bundled BANKING77)")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default=DEFAULT_ENCODER,
                        help="sentence encoder (its bundled head unless --head)")
    parser.add_argument("--encoder-dir", type=Path, default=None, help="built encoder (default: the cache)")


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--model", type=Path, default=None, help="toxicity model .npz (default: bundled)")
    parser.add_argument("--encoder-dir", type=Path, default=None, help="built encoder (default: the cache)")


def run_intent(args: argparse.Namespace) -> int:
    m = eval_intent(args.csv, head=args.head, encoder=args.encoder, encoder_dir=args.encoder_dir,
                    normalize=not args.raw)
    print(f"n            {m['n']}")
    print(f"accuracy     {m['accuracy']:.4f}")
    print(f"macro-F1     {m['macro_f1']:.4f}")
    print(f"out of scope {m['oos_rate']:.4f}")
    if args.json:
        print(json.dumps(m))
    return 0


def run_filter(args: argparse.Namespace) -> int:
    m = eval_filter(args.csv, model=args.model, encoder_dir=args.encoder_dir, normalize=not args.raw)
    print(f"n          {m['n']}")
    print(f"precision  {m['precision']:.4f}")
    print(f"recall     {m['recall']:.4f}")
    print(f"F1         {m['f1']:.4f}")
    if "categories" in m:
        print(f"{'category':16s} {'n':>4s} {'label 1':>7s} {'flagged':>7s} {'precision':>9s} {'recall':>7s} "
              f"{'false flags':>11s}")
        for name, c in m["categories"].items():
            cells = [f"{c[k]:.3f}" if c[k] is not None else "-" for k in ("precision", "recall", "false_flags")]
            print(f"{name:16s} {c['n']:4d} {c['positives']:7d} {c['flagged']:7d} {cells[0]:>9s} {cells[1]:>7s} "
                  f"{cells[2]:>11s}")
    if args.json:
        print(json.dumps(m))
    return 0
