"""Train the toxicity filter on Davidson et al. (2017) and compare it with two baselines.

Label 1 is "offensive or hate speech" (Davidson classes 0 and 1), 0 is
"neither". Tweets are cleaned (HTML entities, mentions, URLs, "RT") and
normalised the way finals look (``operators.spoken_form.normalize_text``: lowercase,
no punctuation, numbers spelled out), because the filter runs on ASR output.

Split: 70% train, 15% dev, 15% held-out test, stratified, seed 0. Training
also gets call-centre texts as negatives (``call_center_texts``). The model
(TF-IDF word 1-2 grams + character 2-4 grams, logistic regression) and its
threshold are chosen on dev. A second logistic regression on the all-MiniLM-L6-v2
embedding (the intent encoder's, which every final already gets) is fitted on
the same texts, and the threshold of the larger of the two scores is tuned on
dev too. The table is on the held-out test split:

* ours, exported to numpy (``operators.content.ToxicityModel``), with and
  without the embedding head;
* ``alt-profanity-check`` (its wheel's TF-IDF + linear SVM). Its authors
  trained it on the whole Davidson corpus, so its figures here are on data it
  has seen: an upper bound, not a fair held-out score;
* a plain word list: ``better-profanity``'s list, flag when any word is on it.

Usage::

    python -m models.toxicity_train                # train, save, print the table
    python -m models.toxicity_train --json         # last line: the table as JSON

Needs scikit-learn (fitting only), ``alt-profanity-check==1.9.1`` and
``better-profanity==0.7.0`` (baselines and the masking word list), and the
sentence encoder built by set-up.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from operators.spoken_form import normalize_text
from operators.content import DEFAULT_TOXICITY, ToxicityModel, text_features
from operators.intent import SentenceEncoder, default_encoder_dir

__all__ = [
    "DAVIDSON",
    "add_arguments",
    "clean_tweet",
    "davidson_splits",
    "fit_embedding_head",
    "fit_toxicity",
    "prf",
    "profanity_wordlist",
    "run",
]

DAVIDSON = Path(__file__).resolve().parents[2] / "shared" / "data" / "toxicity" / "davidson" / "data" / "labeled_data.csv"
_SEED = 0
# On the word list, but words for acts, identities or body parts rather than
# swearing: masking them on their own garbles ordinary speech ("kill the
# process", "my gay son's account", "strip the flange"). The sentence-level
# toxicity score still sees them in context.
_NOT_SWEARING = frozenset(
    "kill murder sex sexy gay lesbian drunk weed nazi stupid dumb fat god pot strip virgin woody loin flange "
    "pee sperm slave lube cowgirl cowgirls hate die crack escort nude naked kinky bondage".split()
)


def clean_tweet(text: str) -> str:
    """A tweet as a final would read it: entities decoded, handles/URLs/RT dropped, normalised."""
    text = html.unescape(text)
    text = re.sub(r"https?://\S+|@\w+|\bRT\b", " ", text)
    return normalize_text(text)


def davidson_splits(path: Path = DAVIDSON) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Cleaned texts, int labels (N,) and index arrays for "train", "dev" and "test"."""
    from sklearn.model_selection import train_test_split

    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    texts = [clean_tweet(r["tweet"]) for r in rows]
    labels = np.array([int(r["class"]) in (0, 1) for r in rows], dtype=np.int64)
    idx = np.arange(len(rows))
    train, rest = train_test_split(idx, test_size=0.3, stratify=labels, random_state=_SEED)
    dev, test = train_test_split(rest, test_size=0.5, stratify=labels[rest], random_state=_SEED)
    return texts, labels, {"train": train, "dev": dev, "test": test}


def profanity_wordlist() -> frozenset[str]:
    """``better-profanity``'s word list: plain lowercase words and phrases only (no leetspeak)."""
    import importlib.resources

    text = (importlib.resources.files("better_profanity") / "profanity_wordlist.txt").read_text()
    return frozenset(w.strip() for w in text.splitlines() if re.fullmatch(r"[a-z' ]+", w.strip()))


def _tfidf(docs: Sequence[list[str]], vocab: dict[str, int], idf: np.ndarray):  # -> scipy.sparse.csr_matrix
    """Sublinear-tf TF-IDF rows, l2-normalised, as ``operators.content`` computes them."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for grams in docs:
        counts: dict[int, int] = {}
        for g in grams:
            i = vocab.get(g)
            if i is not None:
                counts[i] = counts.get(i, 0) + 1
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        x = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * idf[idx]
        norm = float(np.sqrt(x @ x)) or 1.0
        indices.extend(idx.tolist())
        data.extend((x / norm).tolist())
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(docs), len(idf)))


def _vocab(docs: Sequence[list[str]], min_df: int) -> tuple[dict[str, int], np.ndarray]:
    df: dict[str, int] = {}
    for grams in docs:
        for g in set(grams):
            df[g] = df.get(g, 0) + 1
    kept = sorted(g for g, c in df.items() if c >= min_df)
    n = len(docs)
    # scikit-learn's smoothed idf.
    idf = np.array([np.log((1 + n) / (1 + df[g])) + 1.0 for g in kept])
    return {g: i for i, g in enumerate(kept)}, idf


def prf(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of binary predictions (label 1 positive)."""
    tp = int(np.sum((pred == 1) & (y == 1)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n": int(len(y))}


def _best_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    f1 = [prf(y, (scores >= t).astype(np.int64))["f1"] for t in grid]
    return float(grid[int(np.argmax(f1))])


def call_center_texts() -> tuple[list[str], list[str]]:
    """Texts with no offensive language, like what callers say: (train, held-out).

    Train: the BANKING77 train split and CLINC150 ``train`` + ``oos_train``.
    Held-out: the BANKING77 dev split and CLINC150 ``val`` + ``oos_val``
    (never test splits). Davidson alone is 83% offensive tweets, so a model
    fitted on it alone flags ordinary banking requests.
    """
    from models.intent_train import banking77_split, load_banking77, load_clinc150

    texts, labels = load_banking77()
    train, dev = banking77_split(labels)
    clinc = load_clinc150()
    fit = [texts[i] for i in train] + clinc["train"][0] + clinc["oos_train"][0]
    held = [texts[i] for i in dev] + clinc["val"][0] + clinc["oos_val"][0]
    return fit, held


def fit_toxicity(
    texts: Sequence[str],
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    *,
    negatives: Sequence[str] = (),
    c: float = 3.0,
) -> ToxicityModel:
    """Fit on ``split["train"]`` plus ``negatives`` (label 0), tune the threshold on ``split["dev"]``."""
    from scipy.sparse import hstack
    from sklearn.linear_model import LogisticRegression

    n_davidson = len(texts)
    texts = [*texts, *negatives]
    labels = np.concatenate([labels, np.zeros(len(negatives), dtype=np.int64)])
    split = {**split, "train": np.concatenate([split["train"], np.arange(n_davidson, len(texts))])}
    feats = [text_features(t) for t in texts]
    words = [f[0] for f in feats]
    chars = [f[1] for f in feats]
    train = split["train"]
    wv, widf = _vocab([words[i] for i in train], min_df=2)
    cv, cidf = _vocab([chars[i] for i in train], min_df=3)

    def matrix(idx: np.ndarray):
        return hstack([_tfidf([words[i] for i in idx], wv, widf), _tfidf([chars[i] for i in idx], cv, cidf)]).tocsr()

    clf = LogisticRegression(C=c, max_iter=5000).fit(matrix(train), labels[train])
    coef = clf.coef_[0]
    model = ToxicityModel(
        word_vocab=wv,
        word_idf=widf,
        word_coef=coef[: len(wv)],
        char_vocab=cv,
        char_idf=cidf,
        char_coef=coef[len(wv) :],
        bias=float(clf.intercept_[0]),
        threshold=0.5,
        mask_words=frozenset(),
        name="toxicity-davidson-tfidf-lr",
    )
    dev_scores = np.array([model.score(texts[i]) for i in split["dev"]])
    threshold = _best_threshold(dev_scores, labels[split["dev"]])
    # Mask a listed word unless Davidson shows it is not offensive ("kill", "hell"
    # in "kill the process", "what the hell is this fee").
    listed = {w for w in profanity_wordlist() if " " not in w} - _NOT_SWEARING
    mask = frozenset(w for w in listed if w not in wv or coef[wv[w]] > 0.5)
    dev = prf(labels[split["dev"]], (dev_scores >= threshold).astype(np.int64))
    return replace(model, threshold=threshold, mask_words=mask, metrics={f"dev_{k}": v for k, v in dev.items()})


def fit_embedding_head(
    model: ToxicityModel,
    x: np.ndarray,
    labels: np.ndarray,
    split: dict[str, np.ndarray],
    texts: Sequence[str],
    *,
    negatives: np.ndarray,
    encoder: str,
    c: float = 10.0,
) -> ToxicityModel:
    """Add the sentence-embedding head: logistic regression on ``x[split["train"]]`` plus ``negatives``
    (embeddings, label 0); the threshold of ``max(n-gram, embedding)`` is tuned for F1 on dev."""
    from sklearn.linear_model import LogisticRegression

    train = split["train"]
    xs = np.concatenate([x[train], negatives])
    ys = np.concatenate([labels[train], np.zeros(len(negatives), dtype=np.int64)])
    clf = LogisticRegression(C=c, max_iter=5000).fit(xs, ys)
    model = replace(model, embedding_coef=clf.coef_[0].astype(np.float32), embedding_bias=float(clf.intercept_[0]),
                    embedding_encoder=encoder)
    dev = split["dev"]
    scores = np.array([model.score(texts[i], x[i]) for i in dev])
    threshold = _best_threshold(scores, labels[dev])
    m = prf(labels[dev], (scores >= threshold).astype(np.int64))
    return replace(model, combined_threshold=threshold,
                   metrics={**model.metrics, **{f"dev_combined_{k}": v for k, v in m.items()}})


# Hate said in clean words, and clean call-centre text with words that sound bad, written for
# this check (not from any benchmark). Davidson's tweets teach slurs and swearing; this shows
# whether a filter learned more than the words.
PROBE_HATEFUL = (
    "women are too stupid to vote", "all immigrants are criminals and should be deported", "go back to your country",
    "muslims are terrorists", "gay people are disgusting", "i hope you die", "you people are animals",
    "black people are inferior", "jews control the banks", "kill all of them", "disabled people are a burden",
    "you are worthless trash", "women belong in the kitchen", "those people are subhuman",
    "i hate you and your kind", "you are an idiot",
)
PROBE_CLEAN = (
    "i want to cancel my card", "kill the process please", "my gay son needs an account", "i hate waiting on hold",
    "the immigration office sent me a letter", "women's savings account", "what is the interest rate",
    "my card died", "the black card has no fee", "i am from another country",
    "can you help me with my muslim friend's transfer", "this is stupid slow", "my account was killed by fraud",
    "please transfer money to my wife", "i lost my job", "what time do you close",
)


def _word_list_flags(texts: Sequence[str], words: frozenset[str]) -> np.ndarray:
    singles = {w for w in words if " " not in w}
    phrases = [f" {w} " for w in words if " " in w]
    out = []
    for t in texts:
        padded = f" {t} "
        out.append(any(w in singles for w in t.split()) or any(p in padded for p in phrases))
    return np.array(out, dtype=np.int64)


def compare(
    model: ToxicityModel, texts: Sequence[str], labels: np.ndarray, idx: np.ndarray, clean: Sequence[str],
    embed: Callable[[Sequence[str]], np.ndarray],
) -> dict[str, dict[str, float]]:
    """P/R/F1 of ours (with and without the embedding head), alt-profanity-check and the word list
    on ``texts[idx]``.

    ``flag_rate_call_center`` is the share of ``clean`` (held-out banking and
    assistant requests, none offensive) that each one flags; ``probe_recall`` and
    ``probe_flags_clean`` are on ``PROBE_HATEFUL`` and ``PROBE_CLEAN``.
    """
    from profanity_check import predict_prob

    words = profanity_wordlist()

    def combined(xs: Sequence[str]) -> np.ndarray:
        return np.array([model.score(t, e) for t, e in zip(xs, embed(xs))]) >= model.combined_threshold

    scorers = {
        "ours (tf-idf + lr, then max with embedding lr)": combined,
        "ours, tf-idf + lr alone": lambda xs: np.array([model.score(t) for t in xs]) >= model.threshold,
        "alt-profanity-check 1.9.1 (saw davidson)": lambda xs: predict_prob(list(xs)) >= 0.5,
        "word list (better-profanity 0.7.0)": lambda xs: _word_list_flags(xs, words).astype(bool),
    }
    sub = [texts[i] for i in idx]
    table = {}
    for name, flags in scorers.items():
        row = prf(labels[idx], flags(sub).astype(np.int64))
        row["flag_rate_call_center"] = float(np.mean(flags(clean)))
        row["probe_recall"] = float(np.mean(flags(PROBE_HATEFUL)))
        row["probe_flags_clean"] = float(np.mean(flags(PROBE_CLEAN)))
        table[name] = row
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DAVIDSON, help="Davidson labeled_data.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_TOXICITY, help="where to write the model (.npz)")
    parser.add_argument("--encoder-dir", type=Path, default=None, help="built sentence encoder (default: the cache)")
    parser.add_argument("--json", action="store_true", help="last line: the comparison as one JSON object")


def run(args: argparse.Namespace) -> int:
    texts, labels, split = davidson_splits(args.data)
    negatives, clean = call_center_texts()
    model = fit_toxicity(texts, labels, split, negatives=negatives)
    encoder = SentenceEncoder(args.encoder_dir or default_encoder_dir(), threads=0)
    print(f"embedding {len(texts) + len(negatives)} texts with {encoder.name} ...", flush=True)
    model = fit_embedding_head(model, encoder.encode(texts), labels, split, texts,
                               negatives=encoder.encode(negatives), encoder=encoder.name)
    table = compare(model, texts, labels, split["test"], clean, encoder.encode)
    ours = next(iter(table.values()))
    model = replace(model, metrics={**model.metrics, **{f"test_{k}": v for k, v in ours.items()}})
    model.save(args.out)
    print(f"saved {args.out} ({args.out.stat().st_size // 1024} KB), thresholds {model.threshold:.2f} (n-grams), "
          f"{model.combined_threshold:.2f} (with the embedding head)")
    print(f"held-out Davidson test split, n={len(split['test'])}, label 1 = offensive or hate")
    print(f"{'filter':48s} {'precision':>9s} {'recall':>7s} {'F1':>7s} {'flags clean':>11s} {'probe R':>7s} "
          f"{'probe FP':>8s}")
    for name, m in table.items():
        print(f"{name:48s} {m['precision']:9.4f} {m['recall']:7.4f} {m['f1']:7.4f} {m['flag_rate_call_center']:11.4f} "
              f"{m['probe_recall']:7.3f} {m['probe_flags_clean']:8.3f}")
    print(f"flags clean: share of {len(clean)} held-out BANKING77 dev + CLINC150 val/oos_val texts flagged; "
          f"probe: {len(PROBE_HATEFUL)} hateful and {len(PROBE_CLEAN)} clean sentences written for the check")
    if args.json:
        print(json.dumps(table))
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
