"""Training recipe of the streaming Conformer-CTC (``callstream train-asr``).

Resumable: every ``ckpt_every`` steps the whole training state (model,
optimizer, schedule, data position, random generators) goes to
``OUT/last.pt`` atomically, and a run started with the same ``--out`` picks
up from there. The best dev checkpoint is kept as ``OUT/best.pt``.

When ``distill-targets`` has written teacher targets (``runs/teacher``), the
loss adds two dense terms to CTC (``models/teacher.py`` says why): block
``distill_layer`` regresses onto Whisper tiny.en's encoder features through a
linear head dropped at export, and the CTC output matches the teacher CTC
head's per-frame posteriors (KL). Utterances without targets get CTC alone.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from models.conformer import Conformer, ConformerConfig, recalibrate_batchnorm, subsampled_length
from models.data import Augmenter, Utterance, calibration_features, load_audio, load_manifest, real_speech_splits
from models.metrics import ErrorCounter
from models.teacher import DIM as TEACHER_DIM
from models.teacher import TeacherTargets
from models.tokenizer import VOCAB, encode_text

__all__ = ["TrainConfig", "add_arguments", "greedy_decode", "run", "train"]

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data" / "speech"


@dataclass
class TrainConfig:
    out: Path = ROOT / "runs" / "asr"
    corpora: tuple[Path, ...] = (ROOT / "runs" / "corpus" / "train" / "manifest.tsv",)
    heldout_voice: Path | None = ROOT / "runs" / "corpus" / "test_heldout_voice" / "manifest.tsv"
    data_root: Path = DATA_ROOT
    real_repeat: int = 3  # real utterances are few: show each this many times per epoch
    steps: int = 30000
    batch_seconds: float = 120.0  # audio per optimizer micro-batch
    accumulate: int = 1
    lr: float = 2e-3
    warmup: int = 300
    weight_decay: float = 1e-2
    clip: float = 5.0
    threads: int = 2
    workers: int = 1
    seed: int = 0
    eval_every: int = 500
    ckpt_every: int = 100
    eval_max: int = 250  # utterances per dev set at each evaluation
    chunk: int = 8  # encoder frames per streaming chunk at evaluation (320 ms)
    left: int = 32  # encoder frames of attention left context at evaluation
    amp: str = "auto"  # auto | off | bf16
    max_duration: float | None = None  # s; a curriculum stage on short utterances breaks the CTC plateau sooner
    init: Path | None = None  # weights to start a new run from (e.g. the bundled models/assets/acoustic.pt)
    augment_prob: float = 1.0  # share of training utterances augmented
    dither: bool = False  # add the serving pipeline's dither to training and evaluation audio
    pack_prob: float = 0.0  # share of batches whose utterances are joined in pairs (pack_pairs)
    teacher: Path | None = ROOT / "runs" / "teacher"  # Whisper encoder targets (``distill-targets``); used if present
    distill_weight: float = 1.0
    distill_layer: int = 3  # block whose output regresses onto the teacher (0-based); the blocks above serve CTC
    posterior_weight: float = 1.0  # KL from the teacher CTC head's frame posteriors, when they exist
    # Evaluate a copy whose BatchNorm statistics are set from the training mixture (as
    # ``export-asr --recalibrate-bn`` ships it) rather than training's running averages, which
    # move 0.1-0.2 in dev WER from one checkpoint to the next. Checkpoints keep the raw weights.
    recalibrate_bn: bool = True
    bn_synthetic: int = 1500  # synthetic utterances in that calibration set (all real training ones too)
    model: ConformerConfig = field(default_factory=ConformerConfig)


Item = tuple[np.ndarray, list[int], np.ndarray | None, np.ndarray | None]


class SpeechDataset(Dataset):
    def __init__(self, utts: list[Utterance], augment: bool, seed: int, augment_prob: float = 1.0,
                 teacher: TeacherTargets | None = None, dither: bool = False) -> None:
        self.utts = utts
        self.augment = augment
        self.augment_prob = augment_prob
        self.dither = dither
        self.seed = seed
        self.teacher = teacher
        self.aug: Augmenter | None = None

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, i: int) -> Item:
        if self.aug is None:
            info = torch.utils.data.get_worker_info()
            self.aug = Augmenter(self.seed * 1000 + (info.id if info else 0) + random.randrange(1 << 30),
                                 prob=self.augment_prob, quiet_edges=self.teacher is None, dither=self.dither)
        u = self.utts[i]
        feats = self.aug.features_of(load_audio(u.path), self.augment)
        frames = subsampled_length(feats.shape[0])
        distill = self.teacher.get(u.path, frames) if self.teacher else None
        posteriors = self.teacher.posteriors(u.path, frames) if self.teacher else None
        return feats, encode_text(u.text), distill, posteriors


def pack_pairs(items: list[Item], gap: np.ndarray, rng: random.Random) -> list[Item]:
    """Join the items two by two with a quiet gap between: one longer utterance of two sentences.

    Each training utterance otherwise starts the model from an empty context, and a model
    trained only so decodes worse after other speech, as every utterance of a call but the
    first is. The gap is 0.3-1.5 s of quiet features; the transcript gets a space between the
    sentences. The teacher has no targets for the joined audio, so the pairs train on CTC only.
    """
    out = []
    for a, b in zip(items[0::2], items[1::2]):
        g = gap[: rng.randint(30, min(150, gap.shape[0]))]
        out.append((np.concatenate([a[0], g, b[0]]), [*a[1], VOCAB.index(" "), *b[1]], None, None))
    return out + items[len(out) * 2 :]


def collate(items: list[Item], pack_prob: float = 0.0, gap: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
    """Padded features, lengths, CTC targets, target lengths, and the teacher's targets with frame masks.

    With ``pack_prob`` (and ``gap``, quiet feature frames), that share of batches is packed in pairs.
    """
    if gap is not None and len(items) > 1 and random.random() < pack_prob:
        items = pack_pairs(items, gap, random.Random(random.getrandbits(64)))
    lengths = torch.tensor([it[0].shape[0] for it in items])
    feats = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    frames = int(subsampled_length(int(lengths.max())))
    distill = torch.zeros(len(items), frames, TEACHER_DIM)
    distill_mask = torch.zeros(len(items), frames, dtype=torch.bool)
    posteriors = torch.zeros(len(items), frames, len(VOCAB))
    posterior_mask = torch.zeros(len(items), frames, dtype=torch.bool)
    for i, (f, _, d, p) in enumerate(items):
        feats[i, : f.shape[0]] = torch.from_numpy(f)
        if d is not None:
            distill[i, : d.shape[0]] = torch.from_numpy(d)
            distill_mask[i, : d.shape[0]] = True
        if p is not None:
            posteriors[i, : p.shape[0]] = torch.from_numpy(p)
            posterior_mask[i, : p.shape[0]] = True
    targets = torch.tensor([t for it in items for t in it[1]], dtype=torch.int64)
    target_lengths = torch.tensor([len(it[1]) for it in items])
    return feats, lengths, targets, target_lengths, distill, distill_mask, posteriors, posterior_mask


def posterior_loss(log_probs: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per frame, averaged over the frames that have teacher posteriors."""
    if not bool(mask.any()):
        return log_probs.sum() * 0.0
    return F.kl_div(log_probs[mask].float(), teacher[mask], reduction="batchmean")


def distill_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilHuBERT's frame loss, L1 plus cosine distance, over the frames that have a target."""
    if not bool(mask.any()):
        return pred.sum() * 0.0
    p, t = pred[mask].float(), target[mask]
    return (p - t).abs().mean() + (1.0 - F.cosine_similarity(p, t, dim=-1)).mean()


def duration_batches(utts: list[Utterance], max_seconds: float, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length utterances, at most ``max_seconds`` of audio each."""
    order = sorted(range(len(utts)), key=lambda i: utts[i].duration + rng.random() * 0.3)
    batches, cur, longest = [], [], 0.0
    for i in order:
        d = max(utts[i].duration, 0.3)
        if cur and max(longest, d) * (len(cur) + 1) > max_seconds:
            batches.append(cur)
            cur, longest = [], 0.0
        cur.append(i)
        longest = max(longest, d)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def greedy_decode(log_probs: torch.Tensor, length: int) -> str:
    ids = log_probs[:length].argmax(-1).tolist()
    out, prev = [], -1
    for i in ids:
        if i != prev and i != 0:
            out.append(VOCAB[i])
        prev = i
    return " ".join("".join(out).split())


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return 1e-5 + (cfg.lr - 1e-5) * 0.5 * (1 + math.cos(math.pi * progress))


def _use_bf16(cfg: TrainConfig) -> bool:
    if cfg.amp == "off":
        return False
    if cfg.amp == "bf16":
        return True
    # bf16 autocast pays on CPUs with AMX or AVX512-BF16 units; elsewhere it is slower.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def dev_sets(cfg: TrainConfig) -> dict[str, list[Utterance]]:
    splits = real_speech_splits(cfg.data_root)
    sets = {f"{name}_dev": s["dev"] for name, s in splits.items()}
    if cfg.heldout_voice and Path(cfg.heldout_voice).exists():
        sets["synthetic_heldout_voice"] = load_manifest(cfg.heldout_voice)
    return sets


@torch.no_grad()
def evaluate(model: Conformer, sets: dict[str, list[Utterance]], cfg: TrainConfig) -> dict[str, float]:
    """Greedy WER with the streaming chunk mask (equal to chunk-by-chunk streaming)."""
    model.eval()
    aug = Augmenter(0, dither=cfg.dither)
    result = {}
    for name, utts in sets.items():
        counter = ErrorCounter()
        for u in utts[: cfg.eval_max]:
            feats = torch.from_numpy(aug.features_of(load_audio(u.path), augment=False))[None]
            if feats.shape[1] < 7:
                counter.add(u.text, "")
                continue
            lp, n = model(feats, torch.tensor([feats.shape[1]]), chunk=cfg.chunk, left=cfg.left)
            counter.add(u.text, greedy_decode(lp[0], int(n[0])))
        result[name] = round(counter.wer, 4)
    model.train()
    return result


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> Path:
    """Train (or resume) and return the path of the best checkpoint."""
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    utts: list[Utterance] = []
    for manifest in cfg.corpora:
        utts += load_manifest(Path(manifest))
    real = [u for s in real_speech_splits(cfg.data_root).values() for u in s["train"]]
    utts += real * cfg.real_repeat
    utts = [u for u in utts if u.text and (cfg.max_duration is None or u.duration <= cfg.max_duration)]
    sets = dev_sets(cfg)
    calibration: list[np.ndarray] | None = None

    model = Conformer(cfg.model)
    teacher = TeacherTargets(cfg.teacher) if cfg.teacher and (Path(cfg.teacher) / "index.json").exists() else None
    distill_head = torch.nn.Linear(cfg.model.d_model, TEACHER_DIM)
    step, epoch, consumed, best = 0, 0, 0, float("inf")
    last = cfg.out / "last.pt"
    if last.exists():
        ckpt = torch.load(last, weights_only=False)
        model.load_state_dict(ckpt["model"])
        if "distill_head" in ckpt:
            distill_head.load_state_dict(ckpt["distill_head"])
        elif teacher is not None:
            print("this run started without distillation and goes on without it")
            teacher = None
        opt = _optimizer(model, distill_head if teacher else None, cfg)
        opt.load_state_dict(ckpt["optimizer"])
        step, epoch, consumed, best = ckpt["step"], ckpt["epoch"], ckpt["consumed"], ckpt["best"]
        print(f"resumed from {last} at step {step}, epoch {epoch}, best dev WER {best:.4f}")
    elif cfg.init is not None:
        weights = torch.load(cfg.init, map_location="cpu", weights_only=False)
        model = Conformer(ConformerConfig(**weights["config"]))
        model.load_state_dict({k: v.float() for k, v in weights["model"].items()})
        distill_head = torch.nn.Linear(model.config.d_model, TEACHER_DIM)
        if "distill_head" in weights:
            distill_head.load_state_dict(weights["distill_head"])
        opt = _optimizer(model, distill_head if teacher else None, cfg)
        print(f"starting from the weights in {cfg.init}")
    else:
        mean, std = _cmvn(utts, cfg.seed)
        model.set_cmvn(mean, std)
        opt = _optimizer(model, distill_head if teacher else None, cfg)
    if teacher:
        print(f"distilling block {cfg.distill_layer} onto the teacher targets in {cfg.teacher} "
              f"({len(teacher.index)} utterances), weight {cfg.distill_weight}")
    bf16 = _use_bf16(cfg)
    rng = random.Random(cfg.seed)
    quiet = (10 ** (-70 / 20) * np.random.default_rng(cfg.seed).standard_normal(16000 * 2)).astype(np.float32)
    gap = Augmenter(cfg.seed).features_of(quiet, augment=False) if cfg.pack_prob > 0 else None
    log = open(cfg.out / "log.jsonl", "a")
    bar = tqdm(total=cfg.steps, initial=step, desc="train-asr", unit="step", dynamic_ncols=True)
    model.train()
    while step < cfg.steps:
        rng_epoch = random.Random(cfg.seed * 7919 + epoch)
        batches = duration_batches(utts, cfg.batch_seconds, rng_epoch)
        loader = DataLoader(
            SpeechDataset(utts, augment=True, seed=cfg.seed + epoch, augment_prob=cfg.augment_prob, teacher=teacher,
                          dither=cfg.dither),
            batch_sampler=batches[consumed:],
            collate_fn=functools.partial(collate, pack_prob=cfg.pack_prob, gap=gap),
            num_workers=cfg.workers,
            persistent_workers=False,
            prefetch_factor=4 if cfg.workers else None,
        )
        t0 = time.time()
        for micro, (feats, lengths, targets, target_lengths, distill, distill_mask, post, post_mask) in enumerate(
            loader
        ):
            chunk, left = _sample_chunking(rng)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                hidden, out_len = model.encode(feats, lengths, chunk=chunk, left=left)
                lp = F.log_softmax(model.head(hidden[-1]), dim=-1)
                kd_pred = distill_head(hidden[cfg.distill_layer]) if teacher else None
            loss = F.ctc_loss(
                lp.float().transpose(0, 1), targets, out_len, target_lengths, blank=0, zero_infinity=True
            )
            kd = distill_loss(kd_pred, distill, distill_mask) if kd_pred is not None else torch.zeros(())
            kl = posterior_loss(lp, post, post_mask) if teacher else torch.zeros(())
            total = loss + cfg.distill_weight * kd + cfg.posterior_weight * kl
            (total / cfg.accumulate).backward()
            consumed += 1
            if (micro + 1) % cfg.accumulate:
                continue
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, cfg)
            grad = torch.nn.utils.clip_grad_norm_([*model.parameters(), *distill_head.parameters()], cfg.clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", kd=f"{kd.item():.3f}", kl=f"{kl.item():.3f}",
                            lr=f"{_lr_at(step, cfg):.2e}",
                            epoch=epoch)
            log.write(json.dumps({"step": step, "loss": round(loss.item(), 4), "distill": round(kd.item(), 4),
                                  "kl": round(kl.item(), 4),
                                  "grad": round(float(grad), 3),
                                  "audio_s": float(lengths.sum()) / 100, "wall_s": round(time.time() - t0, 2)}) + "\n")
            t0 = time.time()
            if step % cfg.eval_every == 0 or step == cfg.steps:
                scored = model
                if cfg.recalibrate_bn:
                    if calibration is None:
                        calibration = calibration_features(cfg.data_root, cfg.corpora[0] if cfg.corpora else None,
                                                           cfg.bn_synthetic, seed=cfg.seed)
                    scored = recalibrate_batchnorm(copy.deepcopy(model), calibration, chunk=cfg.chunk, left=cfg.left)
                wers = evaluate(scored, sets, cfg)
                real_wer = float(np.mean([v for k, v in wers.items() if not k.startswith("synthetic")]))
                log.write(json.dumps({"step": step, "dev": wers, "dev_real_mean": real_wer}) + "\n")
                tqdm.write(f"step {step}: dev WER {wers} (real mean {real_wer:.4f})")
                # Every evaluated checkpoint is kept (weights only), to pick or average later.
                _save(cfg.out / f"step{step}.pt", {"model": model.state_dict(), "config": asdict(cfg.model),
                                                   "step": step, "dev": wers})
                if real_wer < best:
                    best = real_wer
                    _save(cfg.out / "best.pt", {"model": model.state_dict(), "config": asdict(cfg.model),
                                                "step": step, "dev": wers})
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                extra = {"distill_head": distill_head.state_dict()} if teacher else {}
                _save(last, {"model": model.state_dict(), **extra, "optimizer": opt.state_dict(), "step": step,
                             "epoch": epoch, "consumed": consumed, "best": best, "config": asdict(cfg.model)})
            log.flush()
            if step >= cfg.steps:
                break
        else:
            epoch, consumed = epoch + 1, 0
    bar.close()
    log.close()
    return cfg.out / "best.pt"


def _optimizer(model: Conformer, distill_head: torch.nn.Module | None, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [*model.parameters(), *(distill_head.parameters() if distill_head else [])]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))


def _sample_chunking(rng: random.Random) -> tuple[int, int]:
    """Dynamic chunk training (as in WeNet's U2): one model, many latencies."""
    r = rng.random()
    if r < 0.15:
        return 0, -1
    chunk = rng.choice([4, 6, 8, 8, 8, 12, 16])
    left = rng.choice([16, 32, 32, 64, -1])
    return chunk, left


def _cmvn(utts: list[Utterance], seed: int, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    rng = random.Random(seed)
    aug = Augmenter(seed)
    feats = [aug.features_of(load_audio(u.path), augment=True) for u in rng.sample(utts, min(n, len(utts)))]
    allf = np.concatenate(feats)
    return torch.from_numpy(allf.mean(0)), torch.from_numpy(allf.std(0))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--out", type=Path, default=d.out, help="run folder (checkpoints, log); resumes if present")
    p.add_argument("--corpus", type=Path, action="append", help="training manifest(s); default: the synthetic corpus")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-seconds", type=float, default=d.batch_seconds)
    p.add_argument("--accumulate", type=int, default=d.accumulate)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup", type=int, default=d.warmup, help="warm-up steps (the schedule may change on resume)")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--amp", choices=["auto", "off", "bf16"], default=d.amp)
    p.add_argument("--max-duration", type=float, default=None, help="train only on utterances up to this long (s)")
    p.add_argument("--real-repeat", type=int, default=d.real_repeat,
                   help="times each real training utterance is shown per epoch")
    p.add_argument("--pack-prob", type=float, default=d.pack_prob,
                   help="share of batches whose utterances are joined in pairs with a quiet gap")
    p.add_argument("--augment-prob", type=float, default=1.0, help="share of utterances augmented")
    p.add_argument("--dither", action="store_true", help="add the serving pipeline's dither to the training audio")
    p.add_argument("--init", type=Path, help="start a new run from these weights (e.g. models/assets/acoustic.pt)")
    p.add_argument("--teacher", type=Path, default=d.teacher,
                   help="teacher targets from distill-targets (skipped if absent)")
    p.add_argument("--no-distill", action="store_true", help="train on CTC alone")
    p.add_argument("--distill-weight", type=float, default=d.distill_weight)
    p.add_argument("--distill-layer", type=int, default=d.distill_layer)
    p.add_argument("--posterior-weight", type=float, default=d.posterior_weight)
    p.add_argument("--no-recalibrate-bn", action="store_true",
                   help="evaluate with training's running BatchNorm statistics (faster, noisier)")
    p.add_argument("--d-model", type=int, default=d.model.d_model)
    p.add_argument("--layers", type=int, default=d.model.num_layers)


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        out=args.out, steps=args.steps, batch_seconds=args.batch_seconds, accumulate=args.accumulate, lr=args.lr, warmup=args.warmup,
        threads=args.threads, workers=args.workers, eval_every=args.eval_every, amp=args.amp,
        max_duration=args.max_duration, init=args.init, real_repeat=args.real_repeat, pack_prob=args.pack_prob, augment_prob=args.augment_prob, dither=args.dither,
        teacher=None if args.no_distill else args.teacher, distill_weight=args.distill_weight,
        distill_layer=args.distill_layer, posterior_weight=args.posterior_weight,
        recalibrate_bn=not args.no_recalibrate_bn,
        model=ConformerConfig(d_model=args.d_model, num_layers=args.layers),
    )
    if args.corpus:
        cfg.corpora = tuple(args.corpus)
    print(f"best checkpoint: {train(cfg)}")
    return 0
