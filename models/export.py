"""Export a trained Conformer-CTC to ONNX (streaming step), with metadata, plus an int8 copy.

``torch.onnx.export(dynamo=True)``: the legacy exporter bakes sequence
lengths in, and the result fails in onnxruntime on other lengths.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import Tensor, nn

from models.conformer import SUBSAMPLING, SUBSAMPLING_CONTEXT, Conformer, ConformerConfig, recalibrate_batchnorm
from models.data import calibration_features
from models.runtime import ASSETS, FORMAT
from models.tokenizer import VOCAB
from models.train_asr import DATA_ROOT, TrainConfig
from operators.features import FeatureConfig

__all__ = ["add_arguments", "average_checkpoints", "export_full", "export_streaming", "load_checkpoint", "quantize", "run", "save_weights"]


class _Step(nn.Module):
    def __init__(self, model: Conformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: Tensor, att_cache: Tensor, conv_cache: Tensor, cache_len: Tensor):
        return self.model.infer(feats, att_cache, conv_cache, cache_len)


class _Full(nn.Module):
    def __init__(self, model: Conformer, chunk: int, left: int) -> None:
        super().__init__()
        self.model, self.chunk, self.left = model, chunk, left

    def forward(self, feats: Tensor, lengths: Tensor):
        return self.model(feats, lengths, chunk=self.chunk, left=self.left)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The dynamo exporter warns about axis names it resolves itself; keep strict warnings elsewhere."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        yield


def load_checkpoint(path: Path) -> Conformer:
    """A train-asr checkpoint (last.pt, best.pt) or bundled weights (acoustic.pt)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = Conformer(ConformerConfig(**ckpt["config"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.eval()


def average_checkpoints(paths: list[Path]) -> Conformer:
    """The mean of the weights of several checkpoints of one architecture (a "model soup").

    For runs fine-tuned from the same weights, the mean sits between the runs' trade-offs (on
    the dev sets, the previous bundle and two checkpoints of a run fine-tuned from it averaged
    to a better WER per utterance than each, though not in long streams; see the model card).
    Integer buffers (BatchNorm's batch count) come from the first checkpoint.
    """
    models = [load_checkpoint(p) for p in paths]
    if len({json.dumps(m.config.as_dict(), sort_keys=True) for m in models}) != 1:
        raise ValueError(f"checkpoints of different architectures: {[str(p) for p in paths]}")
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v
            for k, v in states[0].items()}
    models[0].load_state_dict(mean)
    return models[0].eval()


def save_weights(model: Conformer, out: Path, extra: dict | None = None) -> Path:
    """The weights alone in float16 (half the size), to bundle and to resume training from."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"model": state, "config": model.config.as_dict(), **(extra or {})}, out)
    return out


def _metadata(model: Conformer, chunk: int, left: int, extra: dict[str, str]) -> dict[str, str]:
    cfg = model.config
    meta = {
        "format": FORMAT,
        "chunk_frames": str(chunk),
        "left_frames": str(left),
        "subsampling": str(SUBSAMPLING),
        "context_frames": str(SUBSAMPLING_CONTEXT),
        "num_layers": str(cfg.num_layers),
        "d_model": str(cfg.d_model),
        "conv_cache": str(cfg.conv_kernel - 1),
        "vocab": json.dumps(list(VOCAB)),
        "model_config": json.dumps(cfg.as_dict()),
        **FeatureConfig(num_mel_bins=cfg.num_mel_bins).as_metadata(),
        **extra,
    }
    return meta


def _write_metadata(path: Path, meta: dict[str, str]) -> None:
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(path))


def export_streaming(model: Conformer, out: Path, *, chunk: int = 8, left: int = 32,
                     extra_meta: dict[str, str] | None = None) -> Path:
    """Write the streaming step (feats, att_cache, conv_cache, cache_len) -> (log_probs, caches...)."""
    model = model.eval()
    feats = torch.randn(2, SUBSAMPLING * chunk + SUBSAMPLING_CONTEXT, model.config.num_mel_bins)
    att, conv, n = model.init_cache(2, left)
    batch, time = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("time", min=7, max=4096)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter():
        torch.onnx.export(
            _Step(model).eval(),
            (feats, att, conv, n),
            str(out),
            dynamo=True,
            input_names=["feats", "att_cache", "conv_cache", "cache_len"],
            output_names=["log_probs", "new_att_cache", "new_conv_cache", "new_cache_len"],
            dynamic_shapes={"feats": {0: batch, 1: time}, "att_cache": {1: batch}, "conv_cache": {1: batch},
                            "cache_len": {0: batch}},
            external_data=False,
            verbose=False,
        )
    _write_metadata(out, _metadata(model, chunk, left, {"quantized": "0", **(extra_meta or {})}))
    return out


def export_full(model: Conformer, out: Path, *, chunk: int, left: int) -> Path:
    """Whole-utterance graph with the streaming chunk mask: the parity reference."""
    feats = torch.randn(2, 200, model.config.num_mel_bins)
    lengths = torch.tensor([200, 150])
    batch, time = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("time", min=7, max=100000)
    with _quiet_exporter():
        torch.onnx.export(
            _Full(model.eval(), chunk, left).eval(), (feats, lengths), str(out), dynamo=True,
            input_names=["feats", "lengths"], output_names=["log_probs", "out_lengths"],
            dynamic_shapes={"feats": {0: batch, 1: time}, "lengths": {0: batch}}, external_data=False, verbose=False,
        )
    return out


def quantize(src: Path, dst: Path) -> Path:
    """Dynamic int8 (weights int8, activations quantized per call) of the MatMuls.

    The attention's query, key and value weights are slices of one fused matrix, which the
    exported graph splits at run time, so the quantizer saw no constant weight on those MatMuls
    and left them in float. onnxruntime's basic optimisation (constant folding) turns them into
    initializers first: 62 of the 74 MatMuls quantized instead of 44, int8 speed-up over fp32
    1.28x -> 1.42x on one stream (the other 12 multiply activations: scores and values). The
    subsampling convolution is left in float: as ConvInteger it ran slower than float.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        quantize_dynamic(str(folded), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    _write_metadata(dst, {**meta, "quantized": "1"})
    return dst


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, nargs="+",
                   help="a train-asr checkpoint (best.pt, stepN.pt) or bundled acoustic.pt; several: their mean")
    p.add_argument("--out-dir", type=Path, default=ASSETS)
    p.add_argument("--chunk", type=int, default=8, help="encoder frames per chunk (x40 ms)")
    p.add_argument("--left", type=int, default=32, help="encoder frames of attention left context")
    p.add_argument("--recalibrate-bn", action="store_true",
                   help="set BatchNorm statistics from the training mixture (needs the real speech and --corpus)")
    d = TrainConfig()
    p.add_argument("--corpus", type=Path, default=d.corpora[0], help="synthetic training manifest for --recalibrate-bn")
    p.add_argument("--bn-synthetic", type=int, default=d.bn_synthetic, help="synthetic utterances for --recalibrate-bn")


def run(args: argparse.Namespace) -> int:
    model = load_checkpoint(args.checkpoint[0]) if len(args.checkpoint) == 1 else average_checkpoints(args.checkpoint)
    if args.recalibrate_bn:
        torch.set_num_threads(1)  # the bundled statistics were summed on one thread; float sums follow the order
        recalibrate_batchnorm(model, calibration_features(DATA_ROOT, args.corpus, args.bn_synthetic),
                              chunk=args.chunk, left=args.left)
    fp32 = export_streaming(model, args.out_dir / "acoustic.onnx", chunk=args.chunk, left=args.left)
    int8 = quantize(fp32, args.out_dir / "acoustic.int8.onnx")
    weights = save_weights(model, args.out_dir / "acoustic.pt")
    for path in (fp32, int8, weights):
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
