"""Fine-tune Whisper's encoder to the cached chunk schedule, by distillation (resumable).

The teacher is the windowed encoder the CTC head was trained on
(``models.train.stream_encoder``); the student is the same weights run as
``models.train.chunk_encoder.ChunkedEncoder``. The loss is the mean squared
error between their features, frame by frame, so the bundled head keeps
working on the student's output and needs no transcripts: any speech will do.
Training audio is what the head's recipe encodes (the synthetic corpus and the
real training speech, 60% of it through the waveform augmentation chain).

Chunk sizes are drawn as serving makes them: mostly whole chunks, sometimes a
shorter one (an endpoint decided mid-chunk runs the frames it has).

Every ``--eval-every`` steps it writes ``OUT/last.pt`` (to resume) and
``OUT/encoder.pt`` (the float16 weights ``build-asr --encoder`` reads), and
reports the dev sets' greedy WER through the CTC head on the student's
features next to the teacher's. Those dev subsets are small (60 clips a set),
too small to pick a step by, so the recipe keeps the last one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.runtime import BUNDLED_HEAD
from models.train.chunk_encoder import CHUNK, encode_chunks, load_student
from models.train.data import Augmenter, load_audio
from models.train.encode_corpus import corpus_jobs
from models.train.stream_encoder import LOG_MEL_FLOOR, ServingMel, WindowedEncoder, encode_utterance
from models.train.train_head import cosine_step, dev_sets, evaluate, load_head
from models.train.whisper import load_whisper

__all__ = ["chunk_sizes", "main", "train"]

MAX_MEL = 1500  # log-mel frames per training utterance (15 s); longer ones are cut


def chunk_sizes(frames: int, rng: random.Random, partial: float = 0.2) -> list[int]:
    """Chunk sizes covering ``frames`` encoder frames: CHUNK, or with chance ``partial`` fewer."""
    sizes: list[int] = []
    while sum(sizes) < frames:
        sizes.append(CHUNK if rng.random() >= partial else rng.randint(1, CHUNK - 1))
    return sizes


def train(*, corpora: Sequence[Path], data_root: Path, out: Path, steps: int, head: Path = BUNDLED_HEAD,
          lr: float = 1e-4, batch: int = 8, warmup: int = 50, eval_every: int = 250, threads: int = 2, seed: int = 0,
          dev_n: int = 60) -> Path:
    """Distil into ``out`` (resuming from its ``last.pt``); ``head`` scores the dev sets. Returns encoder.pt."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    _, encoder, _ = load_whisper(decoder=False)
    teacher = WindowedEncoder(encoder).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = load_student()
    student.train()
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.0)
    step = 0
    last = out / "last.pt"
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        student.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        print(f"resumed from {last} at step {step}", flush=True)
    front = ServingMel()
    ctc = load_head(head)
    dev = dev_sets(data_root, dev_n, front)

    @torch.no_grad()
    def wer(encode: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        scores = evaluate(ctc, {name: [(encode(mel), text) for mel, text in items] for name, items in dev.items()})
        return {name: s["wer"] for name, s in scores.items()}

    base = wer(lambda mel: encode_utterance(teacher, mel))
    print(f"dev WER through the head on the teacher's features: {json.dumps(base)}", flush=True)
    jobs = corpus_jobs(corpora, data_root, real_copies=2)
    print(f"{len(jobs)} training utterances", flush=True)
    rng = random.Random(f"{seed}:{step}")
    aug = Augmenter(seed + step, prob=1.0, quiet_edges=False)
    memo: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # job -> (mel, teacher features), float16

    def example(i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in memo:
            _, utt, augment = jobs[i]
            x = load_audio(utt.path)
            if augment if augment is not None else rng.random() < 0.6:
                x = aug.waveform(x)
            mel = front(x)[:MAX_MEL]
            with torch.no_grad():
                target = encode_utterance(teacher, mel)
            memo[i] = (mel.astype(np.float16), target.astype(np.float16))
        return memo[i]

    started, losses = time.time(), []
    while step < steps:
        items = [example(rng.randrange(len(jobs))) for _ in range(batch)]
        items = [it for it in items if it[1].shape[0] >= 2]
        t_mel = max(m.shape[0] for m, _ in items)
        mel = torch.full((len(items), t_mel, items[0][0].shape[1]), LOG_MEL_FLOOR)
        target = torch.zeros(len(items), t_mel // 2, items[0][1].shape[1])
        valid = torch.zeros(len(items), t_mel // 2, dtype=torch.bool)
        for j, (m, t) in enumerate(items):
            mel[j, : m.shape[0]] = torch.from_numpy(m.astype(np.float32))
            target[j, : t.shape[0]] = torch.from_numpy(t.astype(np.float32))
            valid[j, : t.shape[0]] = True
        pred = student(mel, chunk_sizes(t_mel // 2, rng))[:, : t_mel // 2]
        loss = F.mse_loss(pred[valid], target[valid])
        cosine_step(opt, loss, lr=lr, step=step, steps=steps, warmup=warmup, floor=0.05, clip=1.0)
        step += 1
        losses.append(loss.item())
        if step % 10 == 0:
            print(f"step {step} mse {np.mean(losses[-10:]):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{len(memo)} cached {(time.time() - started) / 60:.1f} min", flush=True)
        if step % eval_every == 0 or step == steps:
            student.eval()
            scores = wer(lambda mel: encode_chunks(student, mel))
            student.train()
            print(f"step {step} dev WER {json.dumps(scores)} mean {np.mean(list(scores.values())):.4f}", flush=True)
            torch.save({"model": student.state_dict(), "optimizer": opt.state_dict(), "step": step, "dev": scores},
                       out / "last.tmp")
            (out / "last.tmp").replace(last)
            torch.save({"model": {k: v.half() for k, v in student.state_dict().items()}, "step": step,
                        "dev": scores}, out / "encoder.tmp")
            (out / "encoder.tmp").replace(out / "encoder.pt")
    return out / "encoder.pt"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Distil the windowed Whisper encoder into the cached chunk encoder.")
    p.add_argument("--corpus", type=Path, nargs="*", default=[], help="synthetic corpus manifests")
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/speech")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--head", type=Path, default=BUNDLED_HEAD, help="the CTC head that scores the dev sets")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    train(corpora=args.corpus, data_root=args.data_root, out=args.out, steps=args.steps, head=args.head, lr=args.lr,
          batch=args.batch, eval_every=args.eval_every, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
