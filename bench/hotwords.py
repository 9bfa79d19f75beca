"""Hotwords: recall of rare names the LM does not know, with and without the hotword list.

The set is synthetic: 8 made-up names (absent from the domain and the
general-English LM) in 5 call-center sentences, 40 utterances, spoken by
two of the training engines (piper's joe voice and espeak-ng, random
rendering settings; the sentences and names are not in the training text).
It is rendered once into ``runs/bench/hotwords`` with the corpus renderer.
Recall is the share of utterances whose final transcript contains the name;
the cost elsewhere is the WER on the real-speech dev utterances, which hold
none of the names, with the same hotword list on.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.common import ROOT, dev_sets, table
from models.train.corpus import _render_one
from models.train.tts import Utterance, random_settings
from models.evaluate import transcribe_file
from models.metrics import ErrorCounter
from stream.app import DecodingConfig, build_pipeline

NAMES = ("zendra", "velto", "kastor", "renly", "dalmo", "zorvex", "brevan", "vantor")
TEMPLATES = (
    "i would like to speak to {} please",
    "can you put me through to {}",
    "my account manager is {}",
    "is {} available today",
    "i bought the {} plan last month",
)
VOICES = (("piper", "joe"), ("espeak", "en-us"))
SET_DIR = ROOT / "runs" / "bench" / "hotwords"


def build_set(templates: int = len(TEMPLATES), out: Path = SET_DIR) -> list[tuple[Path, str, str]]:
    """(audio path, text, name) of each utterance with the first ``templates`` sentences; renders what is missing."""
    rng = random.Random(7)
    items = []
    for i, name in enumerate(NAMES):
        for j, template in enumerate(TEMPLATES):
            engine, voice = VOICES[(i + j) % len(VOICES)]
            utt = Utterance(f"hw-{i}-{j}", template.format(name), engine, voice, random_settings(rng, engine, voice))
            path = out / "audio" / engine / f"{utt.uid}.flac"
            if j >= templates:
                continue
            if not path.exists():
                result = _render_one(utt, out)
                if result.error:
                    raise RuntimeError(f"rendering {utt.uid} failed: {result.error}")
            items.append((path, utt.text, name))
    return items


def _transcripts(pipeline, paths: list[Path]) -> list[str]:
    return [" ".join(f.text for f in transcribe_file(pipeline, p)[0]) for p in paths]


def compare(n_dev: int, templates: int = len(TEMPLATES)) -> tuple[str, dict]:
    items = build_set(templates)
    dev = [u for split in dev_sets(n_dev).values() for u in split]
    rows, raw = [], {}
    for label, hotwords in (("off", ()), ("on", tuple((name, 0.0) for name in NAMES))):
        pipeline = build_pipeline(decoding=DecodingConfig(hotwords=hotwords))
        hyps = _transcripts(pipeline, [p for p, _, _ in items])
        recall = sum(name in hyp.split() for hyp, (_, _, name) in zip(hyps, items)) / len(items)
        counter = ErrorCounter()
        for u, hyp in zip(dev, _transcripts(pipeline, [u.path for u in dev])):
            counter.add(u.text, hyp)
        rows.append((label, len(items), recall, len(dev), counter.wer))
        raw[label] = {"name_recall": recall, "dev_wer": counter.wer, "examples": hyps[:5]}
    off, on = raw["off"]["name_recall"], raw["on"]["name_recall"]
    raw["recall_ratio"] = on / off if off else float("inf") if on else 1.0
    raw["dev_wer_change_points"] = 100 * (raw["on"]["dev_wer"] - raw["off"]["dev_wer"])
    text = table("Hotwords (8 names absent from the LMs; default weight; beam 16 + LM)",
                 ["hotwords", "name utterances", "name recall", "dev utterances", "dev WER"], rows)
    text += (f"recall with / without: {raw['recall_ratio']:.2f}x; dev WER change "
             f"{raw['dev_wer_change_points']:+.2f} points\n")
    return text, raw
