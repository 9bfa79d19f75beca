"""Intent on spoken BANKING77 dev utterances: text -> speech -> our ASR -> the intent model.

``compare(n)`` (``python -m bench --only spoken-intent``): ``n`` utterances
spread over the BANKING77 dev split are rendered by piper's joe voice (a
training voice of the acoustic model; BANKING77 texts are among its training
sentences, so read the WER as optimistic), transcribed by the streaming
pipeline (beam 16 + LM, second pass), and classified by the bundled head. The
table sets the intent accuracy on the transcripts beside the accuracy on the
same texts typed (normalised like finals), so the cost of recognition errors
shows directly. The bundled head was refitted on train + dev, so it has seen
these texts typed.

``abstention(n)`` (``python -m bench.spoken_intent --n 300``) measures the
confidence-aware decision (``IntentResult.needs_confirmation``) honestly:

* the voice is the acoustic model's held-out one (festival ``ked_diphone``,
  heard in no training), and the head is fitted on the BANKING77 train split
  alone (C and temperature on the typed dev split, as ``models.intent_train``
  does), so neither model has met these utterances;
* the utterances are split in two by position: ``tune`` (even) chooses the
  confirmation threshold, ``eval`` (odd) reports. The threshold is the lowest
  whose answered finals on ``tune`` are right at least ``--target`` of the time;
* the candidate scores (intent probability alone, times the word confidences,
  n-best agreement) are compared on ``tune`` only.

Audio is kept in ``runs/bench/spoken_intent/audio/`` and the finals in
``runs/bench/spoken_intent/<recogniser>/<voice>.jsonl`` (one JSON final per
utterance, as the codec writes them), so reruns with the same recogniser
transcribe nothing again; the first run of
300 utterances takes about 15 minutes on one loaded core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the callstream command does (stream/cli.py)

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from bench.common import ROOT, table
from models.train.corpus import _render_one, normalize_text
from models.train.tts import HELDOUT_VOICE, Utterance, random_settings
from models.evaluate import transcribe_file
from models.intent_train import banking77_heldout_head, banking77_split, embed, intent_metrics, load_banking77
from models.metrics import ErrorCounter
from models.runtime import recogniser_tag
from operators.intent import (
    CONFIRM_BELOW,
    DEFAULT_ENCODER,
    DEFAULT_HEADS,
    ENCODERS,
    IntentClassifier,
    IntentConfig,
    IntentHead,
    SentenceEncoder,
    default_encoder_dir,
    load_classifier,
)
from stream import codec
from stream.events import Final, Hypothesis

__all__ = ["abstention", "compare", "main", "spoken_finals"]

SET_DIR = ROOT / "runs" / "bench" / "spoken_intent"
JOE = ("piper", "joe")


def _joined(finals: Sequence[Final]) -> Final:
    """One final for an utterance the endpointer split: texts and words in order, the i-th n-best
    entries of each joined (the last entry repeated where a final has fewer)."""
    if len(finals) == 1:
        return finals[0]
    depth = max(len(f.nbest) for f in finals)
    nbest = tuple(
        Hypothesis(" ".join(f.nbest[min(k, len(f.nbest) - 1)].text for f in finals if f.nbest),
                   sum(f.nbest[min(k, len(f.nbest) - 1)].score for f in finals if f.nbest))
        for k in range(depth)
    )  # fmt: skip
    return replace(finals[0], text=" ".join(f.text for f in finals if f.text),
                   words=tuple(w for f in finals for w in f.words), nbest=nbest, end=finals[-1].end)  # fmt: skip


def spoken_finals(n: int, voice: tuple[str, str] = JOE, seed: int = 11) -> tuple[list[int], list[Final]]:
    """``n`` BANKING77 dev indices, spread over the split, and our ASR's final for each spoken by ``voice``.

    Cached in ``SET_DIR`` (audio, and ``<recogniser>/<engine>_<voice>.jsonl`` named by
    ``models.runtime.recogniser_tag``, so a new acoustic model transcribes anew); only missing
    utterances are rendered and transcribed. An utterance split into several finals is joined (``_joined``).
    A sentence the voice cannot render (the corpus rules bound its duration to 0.3-20 s; a few
    BANKING77 texts run to 70 words) is left out, and stays out on reruns.
    """
    from tqdm import tqdm

    from stream.app import DecodingConfig, build_pipeline

    texts, labels = load_banking77()
    _, dev = banking77_split(labels)
    pick = [int(i) for i in dev[:: max(1, len(dev) // n)][:n]]
    engine, speaker = voice
    store = SET_DIR / recogniser_tag() / f"{engine}_{speaker}.jsonl"
    done: dict[int, Final] = {}
    failed: set[int] = set()
    if store.exists():
        for line in store.read_text().splitlines():
            row = json.loads(line)
            if "error" in row:
                failed.add(row["index"])
            else:
                done[row["index"]] = codec.decode(row["final"])
    todo = [i for i in pick if i not in done and i not in failed]
    if todo:
        pipeline = build_pipeline(decoding=DecodingConfig())
        store.parent.mkdir(parents=True, exist_ok=True)
        with store.open("a") as f:
            for i in tqdm(todo, desc=f"spoken {engine} {speaker}", unit="utt", dynamic_ncols=True):
                rng = random.Random(f"{seed}:{i}")
                utt = Utterance(f"b77-{i}-{speaker}", texts[i], engine, speaker, random_settings(rng, engine, speaker))
                path = SET_DIR / "audio" / engine / f"{utt.uid}.flac"
                if not path.exists():
                    result = _render_one(utt, SET_DIR)
                    if result.error:
                        print(f"spoken {engine} {speaker}: sentence {i} left out ({result.error})", file=sys.stderr)
                        f.write(json.dumps({"index": i, "error": result.error}) + "\n")
                        failed.add(i)
                        continue
                finals = transcribe_file(pipeline, path, stream_id=f"b77-{i}")[0]
                final = _joined(finals) if finals else Final(f"b77-{i}", "mono", f"b77-{i}/mono/0", 0, "")
                f.write(json.dumps({"index": i, "final": codec.encode(final).decode()}) + "\n")
                f.flush()
                done[i] = final
    kept = [i for i in pick if i in done]
    return kept, [done[i] for i in kept]


def compare(n: int) -> tuple[str, dict]:
    texts, labels = load_banking77()
    pick, finals = spoken_finals(n, JOE)
    typed = [texts[i] for i in pick]
    heard = [f.text for f in finals]
    cats = [labels[i] for i in pick]
    counter = ErrorCounter()
    for ref, hyp in zip(typed, heard):
        counter.add(normalize_text(ref), hyp)
    classifier = load_classifier(IntentConfig())
    rows, raw = [], {"utterances": len(cats), "asr_wer": counter.wer}
    for name, batch in (("typed (normalised)", typed), ("spoken -> callstream ASR", heard)):
        m = intent_metrics(classifier.head, classifier.encoder.encode(batch), cats)
        rows.append((name, len(cats), m["accuracy"], m["macro_f1"]))
        raw[name.split()[0]] = m
    text = table(f"BANKING77 dev intents, typed and spoken (piper joe; ASR WER {counter.wer:.3f})",
                 ["input", "n", "accuracy", "macro-F1"], rows)
    raw["examples"] = list(zip(typed[:5], heard[:5]))
    raw["accuracy_drop"] = float(np.subtract(raw["typed"]["accuracy"], raw["spoken"]["accuracy"]))
    return text, raw


def _lowest_threshold(scores: np.ndarray, right: np.ndarray, target: float) -> float:
    """The lowest threshold t such that the finals with score >= t are right at least ``target`` of the time."""
    for t in np.round(np.arange(0.0, 1.0, 0.01), 2):
        kept = scores >= t
        if kept.any() and right[kept].mean() >= target:
            return float(t)
    return 1.0


def _auroc(scores: np.ndarray, right: np.ndarray) -> float:
    """Probability that a right final scores above a wrong one (ties count half): how well the
    score ranks, whatever the threshold."""
    pos, neg = scores[right], scores[~right]
    if not len(pos) or not len(neg):
        return float("nan")
    return float(np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])))


def _answered(scores: np.ndarray, right: np.ndarray, t: float) -> dict[str, float]:
    kept = scores >= t
    return {
        "threshold": t,
        "n": int(len(right)),
        "auroc": _auroc(scores, right),
        "abstention_rate": float(1.0 - kept.mean()),
        "answered_accuracy": float(right[kept].mean()) if kept.any() else float("nan"),
        "accuracy_without_abstention": float(right.mean()),
    }


def abstention(n: int, *, encoder: str = DEFAULT_ENCODER, target: float = 0.9,
               voice: tuple[str, str] = HELDOUT_VOICE) -> tuple[str, dict]:  # fmt: skip
    """Accuracy on answered finals, abstention rate and accuracy without abstention, ``eval`` half;
    threshold from the ``tune`` half (see the module docstring)."""
    texts, labels = load_banking77()
    pick, finals = spoken_finals(n, voice)
    # The variant the bundled head serves with (int8 MiniLM, float32 MPNet).
    served = IntentHead.load(DEFAULT_HEADS[encoder]).encoder
    enc = SentenceEncoder(default_encoder_dir(encoder), quantized=not served.endswith("/fp32"), threads=1)
    clf = IntentClassifier(enc, banking77_heldout_head(enc), top_k=1)
    labs = np.array(clf.head.labels)
    truth = np.array([labels[i] for i in pick])
    counter = ErrorCounter()
    for i, f in zip(pick, finals):
        counter.add(normalize_text(texts[i]), f.text)

    hyps = [f.text for f in finals]
    probs = clf.head.proba(embed(enc, hyps, None))
    label = probs.argmax(1)
    right = labs[label] == truth
    p_top = probs.max(1)
    conf = [np.array([w.confidence for w in f.words]) if f.words else np.zeros(1) for f in finals]
    # The n-best texts (first pass) beside the final's own text (second pass): the mean
    # probability of the final's label over all of them.
    depth = max(len(f.nbest) for f in finals)
    nb_probs = [clf.head.proba(embed(enc, [f.nbest[min(k, len(f.nbest) - 1)].text if f.nbest else f.text
                                           for f in finals], None)) for k in range(depth)]  # fmt: skip
    agree = np.mean([probs[np.arange(len(finals)), label]] + [p[np.arange(len(finals)), label] for p in nb_probs], 0)

    candidates: dict[str, Callable[[int], float]] = {
        "intent probability (served)": lambda j: p_top[j],
        "x mean word confidence": lambda j: p_top[j] * conf[j].mean(),
        "x sqrt mean word confidence": lambda j: p_top[j] * np.sqrt(conf[j].mean()),
        "x min word confidence": lambda j: p_top[j] * conf[j].min(),
        "n-best mean probability (4 encodes)": lambda j: agree[j],
        "n-best mean x mean word confidence": lambda j: agree[j] * conf[j].mean(),
    }
    tune = np.arange(len(finals)) % 2 == 0
    rows, raw = [], {"utterances": len(finals), "voice": "/".join(voice), "asr_wer": counter.wer,
                     "encoder": clf.encoder.name, "target": target, "candidates": {}}
    for name, fn in candidates.items():
        s = np.array([fn(j) for j in range(len(finals))])
        t = _lowest_threshold(s[tune], right[tune], target)
        r = {"tune": _answered(s[tune], right[tune], t), "eval": _answered(s[~tune], right[~tune], t)}
        raw["candidates"][name] = r
        rows.append((name, r["tune"]["auroc"], t, r["tune"]["abstention_rate"], r["tune"]["answered_accuracy"],
                     r["eval"]["auroc"], r["eval"]["abstention_rate"], r["eval"]["answered_accuracy"],
                     r["eval"]["accuracy_without_abstention"]))  # fmt: skip
    # What the product does with its bundled threshold (needs_confirmation), on eval.
    raw["served"] = _answered(p_top[~tune], right[~tune], CONFIRM_BELOW[encoder])
    raw["typed_accuracy"] = float(np.mean(labs[clf.head.proba(embed(enc, [texts[i] for i in pick], None)).argmax(1)] == truth))
    text = table(
        f"Spoken BANKING77 dev ({len(finals)} utterances, {'/'.join(voice)}, ASR WER {counter.wer:.3f}; "
        f"{clf.encoder.name}; typed accuracy {raw['typed_accuracy']:.3f}): abstain below the threshold "
        f"that keeps tune accuracy >= {target:.2f}",
        ["score", "tune AUROC", "threshold", "tune abstain", "tune acc answered", "eval AUROC", "eval abstain",
         "eval acc answered", "eval acc all"], rows)  # fmt: skip
    served = raw["served"]
    text += (f"served (needs_confirmation below {served['threshold']:.2f}), eval: abstention "
             f"{served['abstention_rate']:.3f}, accuracy answered {served['answered_accuracy']:.3f}, "
             f"accuracy without abstention {served['accuracy_without_abstention']:.3f}\n")
    return text, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="utterances (half tune, half eval; BANKING77 dev has 1001)")
    parser.add_argument("--encoder", choices=sorted(ENCODERS), default=DEFAULT_ENCODER)
    parser.add_argument("--target", type=float, default=0.9, help="accuracy on answered finals the threshold keeps on tune")
    parser.add_argument("--json", action="store_true", help="last line: the figures as one JSON object")
    args = parser.parse_args(argv)
    text, raw = abstention(args.n, encoder=args.encoder, target=args.target)
    print(text)
    if args.json:
        print(json.dumps(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
