"""Intent on spoken BANKING77 dev utterances: text -> speech (piper) -> our ASR -> the intent model.

``n`` utterances spread over the BANKING77 dev split (held out of the intent
head's training) are rendered once by piper's joe voice (a training voice of
the acoustic model; BANKING77 texts are among its training sentences, so read
the WER as optimistic) into ``runs/bench/spoken_intent``, transcribed by the
streaming pipeline (beam 16 + LM), and classified. The table sets the intent
accuracy on the transcripts beside the accuracy on the same texts typed
(normalised like finals), so the cost of recognition errors shows directly.
"""

from __future__ import annotations

import random

import numpy as np

from bench.common import ROOT, table
from models.train.corpus import _render_one, normalize_text
from models.train.tts import Utterance, random_settings
from models.evaluate import transcribe_file
from models.intent_train import banking77_split, intent_metrics, load_banking77
from models.metrics import ErrorCounter
from operators.intent import IntentConfig, load_classifier
from stream.app import DecodingConfig, build_pipeline

SET_DIR = ROOT / "runs" / "bench" / "spoken_intent"


def compare(n: int) -> tuple[str, dict]:
    texts, labels = load_banking77()
    _, dev = banking77_split(labels)
    pick = dev[:: max(1, len(dev) // n)][:n]
    rng = random.Random(11)
    pipeline = build_pipeline(decoding=DecodingConfig())
    typed, heard, cats = [], [], []
    counter = ErrorCounter()
    for i in pick:
        utt = Utterance(f"b77-{i}", texts[i], "piper", "joe", random_settings(rng, "piper", "joe"))
        path = SET_DIR / "audio" / "piper" / f"{utt.uid}.flac"
        if not path.exists():
            result = _render_one(utt, SET_DIR)
            if result.error:
                raise RuntimeError(f"rendering {utt.uid} failed: {result.error}")
        hyp = " ".join(f.text for f in transcribe_file(pipeline, path)[0])
        ref = normalize_text(texts[i])
        counter.add(ref, hyp)
        typed.append(ref)
        heard.append(hyp)
        cats.append(labels[i])
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
