"""Encode the training audio once with the streaming Whisper encoder (resumable).

The encoder is frozen, so its features are computed once and the CTC head
trains on them for many epochs at a fraction of the cost. Each utterance is
encoded exactly as serving will: the serving dither, the ``whisper`` log-mel
front end, and the windowed encoder (``models.train.stream_encoder``). A share
of the utterances first goes through the waveform augmentation chain
(speed, reverb, noise, telephone band, gain, quiet edges: ``models.train.data``).

Output: ``OUT/shard_NNNNN.npz`` (``feats`` float16 (frames, d), ``lengths``,
``texts``, ``ids``) and ``OUT/done.txt`` (ids already encoded). A rerun
encodes only new utterances, so it can follow a corpus that is still being
rendered.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from operators.spoken_form import normalize_text
from models.train.data import Augmenter, Utterance, load_audio, load_manifest, real_speech_splits
from models.train.stream_encoder import AudioEncoder

__all__ = ["corpus_jobs", "encode_corpus", "main"]

SHARD = 400  # utterances per shard file


def corpus_jobs(corpora: Sequence[Path], data_root: Path | None, real_copies: int) -> list[tuple[str, Utterance, bool]]:
    """(id, utterance, augment) for every copy to encode."""
    jobs = []
    for manifest in corpora:
        if not manifest.exists():
            continue
        for u in load_manifest(manifest):
            jobs.append((f"{manifest.parent.name}:{Path(u.path).stem}", u, None))
    if data_root is not None:
        for corpus, split in real_speech_splits(data_root).items():
            for u in split["train"]:
                for copy in range(real_copies):
                    # copy 0 is clean: the real voices also need to be heard as they are
                    jobs.append((f"{corpus}:{Path(u.path).stem}:{copy}", u, copy > 0))
    return jobs


def encode_corpus(out: Path, corpora: Sequence[Path], data_root: Path | None, *, real_copies: int = 2,
                  augment_prob: float = 0.6, seed: int = 0, threads: int = 1, limit: int | None = None,
                  part: tuple[int, int] = (0, 1), chunked: Path | None = None) -> int:
    """Encode what is not yet in ``out``; returns the number of utterances encoded now.

    ``part`` (i, n) takes the i-th of n disjoint parts (by id), for n processes side by side.
    ``chunked``: encode with these chunk-encoder weights instead of the windowed encoder.
    """
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    done_file = out / "done.txt"
    done = set(done_file.read_text().split()) if done_file.exists() else set()
    jobs = [j for j in corpus_jobs(corpora, data_root, real_copies)
            if j[0] not in done and zlib.crc32(j[0].encode()) % part[1] == part[0]][:limit]
    if not jobs:
        return 0
    encode = AudioEncoder(chunked)
    rng = random.Random(f"{seed}:{len(done)}")
    aug = Augmenter(seed + len(done), prob=1.0)
    shard_no = len(list(out.glob("shard_*.npz")))
    feats, lengths, texts, ids = [], [], [], []
    started, n_done = time.time(), 0

    def write() -> None:
        nonlocal shard_no
        np.savez(out / f"shard_{shard_no:05d}.npz", feats=np.concatenate(feats).astype(np.float16),
                 lengths=np.array(lengths, np.int32), texts=np.array(texts), ids=np.array(ids))
        with open(done_file, "a") as fh:
            fh.write("\n".join(ids) + "\n")
        shard_no += 1
        feats.clear(), lengths.clear(), texts.clear(), ids.clear()

    for uid, utt, augment in jobs:
        text = normalize_text(utt.text)
        if not text:
            continue
        x = load_audio(utt.path)
        if augment if augment is not None else rng.random() < augment_prob:
            x = aug.waveform(x)
        enc = encode(x)
        if enc.shape[0] < 2:
            continue
        feats.append(enc)
        lengths.append(enc.shape[0])
        texts.append(text)
        ids.append(uid)
        n_done += 1
        if len(ids) == SHARD:
            write()
            rate = n_done / (time.time() - started)
            print(f"encoded {n_done}/{len(jobs)} ({rate:.1f} utt/s)", flush=True)
    if ids:
        write()
    return n_done


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Encode training audio with the streaming Whisper encoder.")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--corpus", type=Path, nargs="*", default=[], help="synthetic corpus manifests")
    p.add_argument("--data-root", type=Path, default=None, help="shared data folder: add the real speech")
    p.add_argument("--real-copies", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--part", default="0/1", help="I/N: encode the I-th of N disjoint parts")
    p.add_argument("--seed", type=int, default=0, help="augmentation draws: another seed, other copies")
    p.add_argument("--chunked", type=Path, default=None,
                   help="the chunk encoder's weights (distil_encoder encoder.pt): encode as the served step does")
    args = p.parse_args(argv)
    i, n_parts = (int(v) for v in args.part.split("/"))
    n = encode_corpus(args.out, args.corpus, args.data_root, real_copies=args.real_copies, threads=args.threads,
                      limit=args.limit, part=(i, n_parts), seed=args.seed, chunked=args.chunked)
    print(f"encoded {n} utterances into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
