"""Train the streaming Conformer-CTC head on encoded features (resumable).

The features come from ``models.train.encode_corpus`` (the frozen streaming
Whisper encoder, computed once). Batches are packed by length up to a frame
budget; the head learns under the serving chunk mask (16 frames, 64 of left
context), with some batches on shorter chunks, because an endpoint probe runs
the model on part of a chunk. Input masking in time and dropout stand in for
SpecAugment, since the features are fixed.

Every ``--eval-every`` steps the greedy WER/CER is measured on utterances
held out of the encoded corpus (1 in 50, by id) and on the real-speech dev
splits (encoded on the fly), and ``last.pt`` / ``best.pt`` are written to
``--out``. A rerun with the same ``--out`` resumes from ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.train.data import load_audio, real_speech_splits
from models.metrics import ErrorCounter
from models.train.tokenizer import VOCAB, encode_text
from models.train.ctc_head import CtcHead, HeadConfig
from models.train.stream_encoder import AudioEncoder

__all__ = ["greedy_text", "load_head", "main", "train"]

CHUNK = 16  # encoder frames per serving chunk (0.32 s)
LEFT = 64  # encoder frames of attention left context (1.28 s)


# Encoded ids are "corpus:utterance" for synthetic speech and "fsdd:clip:copy" (and so on) for the
# real training clips, whose dev splits are held out by speaker instead.
_REAL = ("fsdd:", "speechcommands:", "an4:")


def _held_out(uid: str) -> bool:
    """1 in 50 synthetic utterances, by id, for the held-out synthetic dev set."""
    return not uid.startswith(_REAL) and zlib.crc32(uid.encode()) % 50 == 0


class _Data:
    """Every shard's features in memory (float16), split into train and held-out by id."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(folders)
        self.loaded: set[str] = set()
        self.train: list[tuple[np.ndarray, list[int]]] = []
        self.held: list[tuple[np.ndarray, str]] = []
        self.refresh()

    def refresh(self) -> int:
        """Load shards written since the last call; returns how many utterances were added."""
        added = 0
        for path in sorted(p for folder in self.folders for p in folder.glob("shard_*.npz")):
            if str(path) in self.loaded:
                continue
            with np.load(path) as d:
                feats, lengths, texts, ids = d["feats"], d["lengths"], d["texts"], d["ids"]
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            for i, (uid, text) in enumerate(zip(ids, texts)):
                f = feats[offsets[i] : offsets[i + 1]]
                if _held_out(str(uid)) and len(self.held) < 300:
                    self.held.append((f, str(text)))
                else:
                    self.train.append((f, encode_text(str(text))))
                added += 1
            self.loaded.add(str(path))
        return added

    def batches(self, rng: random.Random, max_frames: int) -> list[list[int]]:
        """Indices of train utterances packed by length into batches of at most ``max_frames`` padded frames."""
        order = sorted(range(len(self.train)), key=lambda i: (self.train[i][0].shape[0], rng.random()))
        batches, cur, longest = [], [], 0
        for i in order:
            n = self.train[i][0].shape[0]
            if cur and max(longest, n) * (len(cur) + 1) > max_frames:
                batches.append(cur)
                cur, longest = [], 0
            cur.append(i)
            longest = max(longest, n)
        if cur:
            batches.append(cur)
        rng.shuffle(batches)
        return batches


def cosine_step(opt: torch.optim.Optimizer, loss: torch.Tensor, *, lr: float, step: int, steps: int, warmup: int,
                floor: float, clip: float) -> None:
    """One optimiser step at step ``step``'s learning rate: linear warm-up, then a cosine down to
    ``floor`` times ``lr``; gradients clipped to norm ``clip``."""
    scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps)))
    for g in opt.param_groups:
        g["lr"] = lr * max(scale, floor)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    opt.step()


def greedy_text(log_probs: np.ndarray) -> str:
    """Best path of (T, vocab) log-probs, collapsed, blanks dropped."""
    best = log_probs.argmax(axis=-1)
    chars = [VOCAB[b] for k, b in enumerate(best) if b and (k == 0 or b != best[k - 1])]
    return " ".join("".join(chars).split())


def load_head(path: Path) -> CtcHead:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    head = CtcHead(HeadConfig(**ckpt["config"]))
    head.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    return head.eval()


def dev_sets(data_root: Path, n: int, encode: Callable[[np.ndarray], np.ndarray]
             ) -> dict[str, list[tuple[np.ndarray, str]]]:
    """Real-speech dev utterances through ``encode`` (16 kHz audio in), the first ``n`` of each by a
    fixed shuffle."""
    out = {}
    for name, split in real_speech_splits(data_root).items():
        utts = list(split["dev"])
        random.Random(0).shuffle(utts)
        out[name] = [(encode(load_audio(u.path)), u.text) for u in utts[:n]]
    return out


@torch.no_grad()
def evaluate(head: CtcHead, sets: dict[str, list[tuple[np.ndarray, str]]]) -> dict[str, dict[str, float]]:
    head.eval()
    scores = {}
    for name, items in sets.items():
        if not items:
            continue
        counter = ErrorCounter()
        for feats, text in items:
            x = torch.from_numpy(np.asarray(feats, np.float32))[None]
            lp = head(x, torch.tensor([x.shape[1]]), CHUNK, LEFT)[0].numpy()
            counter.add(text, greedy_text(lp))
        scores[name] = {"wer": round(counter.wer, 4), "cer": round(counter.cer, 4)}
    head.train()
    return scores


def train(*, data: Sequence[Path], out: Path, steps: int, data_root: Path, lr: float = 1.5e-3, warmup: int = 150,
          max_frames: int = 10000, eval_every: int = 150, threads: int = 2, seed: int = 0,
          config: HeadConfig | None = None, init: Path | None = None, chunked: Path | None = None) -> Path:
    """Train a head into ``out`` (resuming from its ``last.pt``); ``init``: start from that head's weights;
    ``chunked``: the chunk encoder's weights that encoded the data (the dev sets are encoded with them too)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    if init is not None:
        head = load_head(init).train()
        config = head.config
    else:
        config = config or HeadConfig()
        head = CtcHead(config)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    step, best = 0, math.inf
    last = out / "last.pt"
    if last.exists():
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        head = CtcHead(HeadConfig(**ckpt["config"]))
        head.load_state_dict(ckpt["model"])
        opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
        opt.load_state_dict(ckpt["optimizer"])
        step, best = ckpt["step"], ckpt["best"]
        print(f"resumed from {last} at step {step}", flush=True)
    corpus = _Data(data)
    dev = {"held_out_synthetic": corpus.held, **dev_sets(data_root, 150, AudioEncoder(chunked))}
    print(f"{len(corpus.train)} training utterances, dev sets {({k: len(v) for k, v in dev.items()})}", flush=True)
    rng = random.Random(f"{seed}:{step}")
    head.train()
    started, losses = time.time(), []
    while step < steps:
        if corpus.refresh():
            print(f"{len(corpus.train)} training utterances", flush=True)
        for batch in corpus.batches(rng, max_frames):
            if step >= steps:
                break
            items = [corpus.train[i] for i in batch]
            lengths = torch.tensor([f.shape[0] for f, _ in items])
            x = torch.zeros(len(items), int(lengths.max()), config.input_dim)
            for j, (f, _) in enumerate(items):
                x[j, : f.shape[0]] = torch.from_numpy(np.asarray(f, np.float32))
                for _ in range(2):  # time masks, up to 0.2 s each
                    w = rng.randint(0, 10)
                    s = rng.randint(0, max(0, f.shape[0] - w))
                    x[j, s : s + w] = 0.0
            x = F.dropout(x, 0.1)
            targets = torch.tensor([t for _, ids in items for t in ids])
            target_len = torch.tensor([len(ids) for _, ids in items])
            chunk = CHUNK if rng.random() < 0.7 else rng.choice([4, 8, 12])
            log_probs = head(x, lengths, chunk, LEFT)
            loss = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_len, zero_infinity=True)
            cosine_step(opt, loss, lr=lr, step=step, steps=steps, warmup=warmup, floor=0.02, clip=5.0)
            step += 1
            losses.append(loss.item())
            if step % 10 == 0:
                print(f"step {step} loss {np.mean(losses[-10:]):.3f} lr {opt.param_groups[0]['lr']:.2e} "
                      f"{(time.time() - started) / 60:.1f} min", flush=True)
            if step % eval_every == 0 or step == steps:
                scores = evaluate(head, dev)
                mean = float(np.mean([s["wer"] for s in scores.values()]))
                print(f"step {step} dev {json.dumps(scores)} mean WER {mean:.4f}", flush=True)
                ckpt = {"model": head.state_dict(), "config": config.as_dict(), "optimizer": opt.state_dict(),
                        "step": step, "best": min(best, mean), "dev": scores}
                torch.save(ckpt, out / "last.tmp")
                (out / "last.tmp").replace(last)
                if mean < best:
                    best = mean
                    torch.save({"model": {k: v.half() for k, v in head.state_dict().items()},
                                "config": config.as_dict(), "step": step, "dev": scores}, out / "best.pt")
    return out / "best.pt"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Train the streaming CTC head on encoded features.")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="folders of encode_corpus shards")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/speech")
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--max-frames", type=int, default=10000)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--init", type=Path, help="start from this head (e.g. models/assets/ctc_head.pt): fine-tuning")
    p.add_argument("--chunked", type=Path, default=None,
                   help="the chunk encoder's weights the data was encoded with (encode_corpus --chunked)")
    args = p.parse_args(argv)
    train(data=args.data, out=args.out, steps=args.steps, data_root=args.data_root, lr=args.lr,
          max_frames=args.max_frames, warmup=args.warmup, eval_every=args.eval_every, threads=args.threads,
          init=args.init, chunked=args.chunked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
