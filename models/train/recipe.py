"""``callstream train-asr``: the acoustic model's whole recipe, every step resumable.

1. Render the synthetic corpus: general-English, intent and call-centre text
   spoken by the offline TTS engines (``models.train.corpus``, ``--general``).
2. Encode it, and the shared real speech, once with the frozen streaming
   Whisper encoder (``models.train.encode_corpus``), in two processes.
3. Train the Conformer-CTC head on the features (``models.train.train_head``).
4. Fine-tune the encoder to run chunk by chunk with a key/value cache, by
   distillation from the windowed encoder (``models.train.distil_encoder``).
5. Encode the audio again with that chunk encoder, as serving runs it, and
   fine-tune the head on those features (``train_head --init --chunked``).
6. Encode the real speech's training clips three more times (other augmentation
   draws) and fine-tune the head again on everything: its few real speakers are
   what it learns real voices from.
7. Build the recogniser's graphs from the head and encoder (``build-asr``)
   into ``OUT/model``, ready for ``--model OUT/model/acoustic.int8.onnx``.

Each step skips what an earlier run finished, so rerunning the same command
after an interruption goes on where it stopped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from models.train.corpus import build_corpus

__all__ = ["add_arguments", "run"]

DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("runs/asr"), help="working folder (corpus, features, checkpoints)")
    p.add_argument("--utterances", type=int, default=16000, help="synthetic utterances to render")
    p.add_argument("--steps", type=int, default=900, help="head training steps")
    p.add_argument("--encoder-steps", type=int, default=3000, help="encoder distillation steps")
    p.add_argument("--head-ft-steps", type=int, default=300, help="head fine-tuning steps on the chunk encoder's features")
    p.add_argument("--head-real-steps", type=int, default=400,
                   help="head fine-tuning steps with the real speech's extra copies")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT, help="the shared real speech")
    p.add_argument("--workers", type=int, default=2, help="processes for rendering and encoding")
    p.add_argument("--seed", type=int, default=2)


def run(args: argparse.Namespace) -> int:
    from models.train.distil_encoder import train as distil
    from models.train.export_whisper import build_asr
    from models.train.train_head import train

    out: Path = args.out
    print(f"[1/7] rendering {args.utterances} synthetic utterances into {out / 'corpus'}", flush=True)
    manifest = build_corpus(out / "corpus", n_utterances=args.utterances, seed=args.seed, workers=args.workers,
                            general=True)
    print(f"[2/7] encoding with the windowed Whisper encoder into {out / 'features'}", flush=True)
    parts = _encode(out / "features", manifest, args)
    if parts is None:
        return 1
    print(f"[3/7] training the CTC head for {args.steps} steps in {out / 'head'}", flush=True)
    best = train(data=parts, out=out / "head", steps=args.steps, data_root=args.data_root)
    print(f"[4/7] distilling the chunk encoder for {args.encoder_steps} steps in {out / 'encoder'}", flush=True)
    encoder = distil(corpora=[manifest], data_root=args.data_root, out=out / "encoder", steps=args.encoder_steps,
                     head=best)
    print(f"[5/7] encoding with the chunk encoder into {out / 'features-chunked'}, then fine-tuning the head "
          f"on it for {args.head_ft_steps} steps in {out / 'head-chunked'}", flush=True)
    chunked = _encode(out / "features-chunked", manifest, args, encoder)
    if chunked is None:
        return 1
    head = train(data=chunked, out=out / "head-chunked", steps=args.head_ft_steps, data_root=args.data_root,
                 lr=3e-4, warmup=30, eval_every=100, init=best, chunked=encoder)
    print(f"[6/7] encoding the real speech again into {out / 'features-real'}, then fine-tuning the head on "
          f"all of it for {args.head_real_steps} steps in {out / 'head-real'}", flush=True)
    real = _encode(out / "features-real", None, args, encoder, ["--real-copies", "3", "--seed", str(args.seed + 5)])
    if real is None:
        return 1
    head = train(data=[*chunked, *real], out=out / "head-real", steps=args.head_real_steps, data_root=args.data_root,
                 lr=3e-4, warmup=30, eval_every=100, init=head, chunked=encoder)
    print(f"[7/7] building the recogniser from {head} and {encoder}", flush=True)
    build_asr(out / "model", head_path=head, encoder_path=encoder, force=True)
    return 0


def _encode(folder: Path, manifest: Path | None, args: argparse.Namespace, chunked: Path | None = None,
            extra: Sequence[str] = ()) -> list[Path] | None:
    """Encode the corpus (if any) and the real speech in ``args.workers`` processes, with ``extra``
    arguments for ``encode_corpus``; None if one failed."""
    parts = [folder / f"part{i}" for i in range(args.workers)]
    options = [*(["--corpus", str(manifest)] if manifest else []), *(["--chunked", str(chunked)] if chunked else []),
               *extra]
    procs = [subprocess.Popen([sys.executable, "-m", "models.train.encode_corpus", "--out", str(part),
                               "--data-root", str(args.data_root), "--part", f"{i}/{args.workers}", *options])
             for i, part in enumerate(parts)]
    if any(p.wait() for p in procs):
        print("train-asr: encoding failed; rerun the same command to go on", file=sys.stderr)
        return None
    return parts
