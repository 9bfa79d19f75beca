"""A chunked streaming Conformer-CTC in torch.

torchaudio's ``Conformer`` takes only a key-padding mask (no chunk mask) and
has no caches, and its depthwise convolution is symmetric (it looks into the
future), so it cannot stream. The blocks are written here instead, with:

* 4x convolutional subsampling with no time padding, so feature frame ``t``
  feeds encoder frame ``(t - 7) // 4 + 1`` the same way in every mode;
* self-attention over the current chunk plus ``left`` frames of left context;
* causal depthwise convolutions whose left padding becomes a cache;
* BatchNorm after the depthwise convolution, as in the paper: with LayerNorm
  there instead, a 16-utterance overfit test sat on the CTC blank plateau
  for 100+ steps where BatchNorm fits it in 70. In eval mode it is a fixed
  per-channel affine map, so streaming is unaffected;
* no absolute positional encoding: positions come from the causal
  convolutions, which keeps every chunk independent of its absolute index.

``forward`` is the whole-utterance path with a chunk mask (training, and the
reference for parity tests). ``infer`` is the streaming step: it takes one
chunk of features and the caches, and returns log-probs and new caches.
Chunked ``infer`` equals ``forward`` with the same chunk and left context.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Conformer", "ConformerConfig", "chunk_mask", "stream_blocks", "subsampled_length"]


@dataclass(frozen=True)
class ConformerConfig:
    num_mel_bins: int = 80
    d_model: int = 144
    num_layers: int = 6
    num_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1
    vocab_size: int = 29  # blank + alphabet
    subsampling_channels: int = 96
    conv_norm: str = "batch"  # batch | layer (after the depthwise convolution)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


SUBSAMPLING = 4
# Feature frames the subsampling needs beyond 4 * chunk: two 3-wide convs.
SUBSAMPLING_CONTEXT = 3


def subsampled_length(frames: Tensor | int) -> Tensor | int:
    """Encoder frames produced from ``frames`` feature frames."""
    if isinstance(frames, int):
        return max(0, (frames - 7) // 4 + 1)
    return torch.clamp(torch.div(frames - 7, 4, rounding_mode="floor") + 1, min=0)


def chunk_mask(length: int, chunk: int, left: int, device: torch.device | None = None) -> Tensor:
    """Bool (length, length): query ``i`` may see key ``j``.

    A query sees its whole chunk and ``left`` frames before the chunk start
    (``left < 0`` means unlimited). ``chunk <= 0`` means full context.
    """
    idx = torch.arange(length, device=device)
    if chunk <= 0:
        return torch.ones(length, length, dtype=torch.bool, device=device)
    start = torch.div(idx, chunk, rounding_mode="floor") * chunk
    end = start + chunk
    visible = idx[None, :] < end[:, None]
    if left >= 0:
        visible &= idx[None, :] >= (start - left)[:, None]
    return visible


class Subsampling(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        c = cfg.subsampling_channels
        self.conv1 = nn.Conv2d(1, c, 3, stride=2)
        self.conv2 = nn.Conv2d(c, c, 3, stride=2)
        freq = ((cfg.num_mel_bins - 3) // 2 + 1 - 3) // 2 + 1
        self.out = nn.Linear(c * freq, cfg.d_model)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, mel) -> (B, (T - 7) // 4 + 1, d_model)."""
        x = F.relu(self.conv1(x.unsqueeze(1)))
        x = F.relu(self.conv2(x))
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f))


class FeedForward(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model)
        self.up = nn.Linear(cfg.d_model, cfg.d_model * cfg.ff_mult)
        self.down = nn.Linear(cfg.d_model * cfg.ff_mult, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.down(self.dropout(F.silu(self.up(self.norm(x))))))


class SelfAttention(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.norm = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor, cache: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, d); mask bool (B, T, L + T) over [cache, x]; cache (B, L, d) of normed inputs.

        Returns the residual branch (B, T, d) and the normed inputs (B, L + T, d).
        """
        h = self.norm(x)
        kv_in = h if cache is None else torch.cat([cache, h], dim=1)
        b, t, d = h.shape
        dh = d // self.heads
        w_q, w_k, w_v = self.qkv.weight.split(d)
        b_q, b_k, b_v = self.qkv.bias.split(d)
        q = F.linear(h, w_q, b_q).view(b, t, self.heads, dh).transpose(1, 2)
        k = F.linear(kv_in, w_k, b_k).view(b, -1, self.heads, dh).transpose(1, 2)
        v = F.linear(kv_in, w_v, b_v).view(b, -1, self.heads, dh).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
        scores = scores.masked_fill(~mask.unsqueeze(1), -1e4)
        attn = torch.softmax(scores, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, t, d)
        return self.dropout(self.out(y)), kv_in


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, channels, T) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvModule(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.kernel = cfg.conv_kernel
        self.norm = nn.LayerNorm(d)
        self.pointwise_in = nn.Linear(d, 2 * d)
        self.depthwise = nn.Conv1d(d, d, cfg.conv_kernel, groups=d)
        # LayerNorm needs no recalibration and suits a head over pretrained features.
        self.conv_norm = nn.BatchNorm1d(d) if cfg.conv_norm == "batch" else _ChannelLayerNorm(d)
        self.pointwise_out = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, cache: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x (B, T, d); cache (B, d, kernel - 1) of past GLU outputs (zeros at stream start)."""
        h = F.glu(self.pointwise_in(self.norm(x)), dim=-1).transpose(1, 2)
        if cache is None:
            h = F.pad(h, (self.kernel - 1, 0))
        else:
            h = torch.cat([cache, h], dim=2)
        new_cache = h[:, :, h.shape[2] - (self.kernel - 1) :]
        h = F.silu(self.conv_norm(self.depthwise(h))).transpose(1, 2)
        h = self.pointwise_out(h)
        return self.dropout(h), new_cache


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.ff1 = FeedForward(cfg)
        self.attn = SelfAttention(cfg)
        self.conv = ConvModule(cfg)
        self.ff2 = FeedForward(cfg)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(
        self, x: Tensor, mask: Tensor, att_cache: Tensor | None = None, conv_cache: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        x = x + 0.5 * self.ff1(x)
        a, kv_in = self.attn(x, mask, att_cache)
        x = x + a
        c, new_conv = self.conv(x, conv_cache)
        x = x + c
        x = self.norm(x + 0.5 * self.ff2(x))
        return x, kv_in, new_conv


class Conformer(nn.Module):
    """Conformer-CTC. ``forward`` for whole utterances, ``infer`` for streaming."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.config = cfg
        self.register_buffer("feat_mean", torch.zeros(cfg.num_mel_bins))
        self.register_buffer("feat_istd", torch.ones(cfg.num_mel_bins))
        self.subsampling = Subsampling(cfg)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.num_layers))
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def set_cmvn(self, mean: Tensor, std: Tensor) -> None:
        """Global feature normalisation, baked into the model (and its ONNX export)."""
        self.feat_mean.copy_(mean)
        self.feat_istd.copy_(1.0 / std.clamp(min=1e-3))

    def forward(self, feats: Tensor, lengths: Tensor, chunk: int = 0, left: int = -1) -> tuple[Tensor, Tensor]:
        """feats (B, T, mel) float32 log-mel; lengths (B,) frames.

        Returns CTC log-probs (B, T', vocab) and output lengths (B,).
        """
        hidden, out_len = self.encode(feats, lengths, chunk, left)
        return F.log_softmax(self.head(hidden[-1]), dim=-1), out_len

    def encode(self, feats: Tensor, lengths: Tensor, chunk: int = 0, left: int = -1) -> tuple[list[Tensor], Tensor]:
        """Every block's output (B, T', d_model), first to last, and the output lengths (B,)."""
        x = self.subsampling((feats - self.feat_mean) * self.feat_istd)
        out_len = subsampled_length(lengths)
        t = x.shape[1]
        valid = torch.arange(t, device=x.device)[None, :] < out_len[:, None]
        mask = chunk_mask(t, chunk, left, x.device)[None] & valid[:, None, :]
        hidden = []
        for block in self.blocks:
            x, _, _ = block(x, mask)
            hidden.append(x)
        return hidden, out_len

    def init_cache(self, batch: int, left: int) -> tuple[Tensor, Tensor, Tensor]:
        """Empty caches: attention (layers, B, left, d), conv (layers, B, d, kernel-1), valid (B,)."""
        cfg = self.config
        return (
            torch.zeros(cfg.num_layers, batch, left, cfg.d_model),
            torch.zeros(cfg.num_layers, batch, cfg.d_model, cfg.conv_kernel - 1),
            torch.zeros(batch, dtype=torch.int64),
        )

    def infer(
        self, feats: Tensor, att_cache: Tensor, conv_cache: Tensor, cache_len: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One streaming step.

        feats (B, 4*C + 3, mel): a chunk plus the 3 frames of subsampling context
        that the previous chunk ended with. att_cache (layers, B, L, d);
        conv_cache (layers, B, d, kernel-1); cache_len (B,) int64 valid frames
        at the end of att_cache. Returns log-probs (B, C, vocab) and new caches.
        """
        x = self.subsampling((feats - self.feat_mean) * self.feat_istd)
        x, att, conv, lens = stream_blocks(self.blocks, x, att_cache, conv_cache, cache_len)
        return F.log_softmax(self.head(x), dim=-1), att, conv, lens


def stream_blocks(blocks: nn.ModuleList, x: Tensor, att_cache: Tensor, conv_cache: Tensor, cache_len: Tensor
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One chunk (B, T, d) through Conformer ``blocks`` with their caches.

    att_cache (layers, B, L, d) of normed inputs, the last ``cache_len`` (B,) of them valid;
    conv_cache (layers, B, d, kernel - 1). Returns the output and the new caches.
    """
    b, t, _ = x.shape
    left = att_cache.shape[2]
    cache_ok = torch.arange(left, device=x.device)[None, :] >= (left - cache_len)[:, None]
    mask = torch.cat([cache_ok, torch.ones(b, t, dtype=torch.bool, device=x.device)], dim=1)
    mask = mask[:, None, :].expand(b, t, left + t)
    new_att, new_conv = [], []
    for i, block in enumerate(blocks):
        x, kv_in, conv = block(x, mask, att_cache[i], conv_cache[i])
        new_att.append(kv_in[:, kv_in.shape[1] - left :])
        new_conv.append(conv)
    return x, torch.stack(new_att), torch.stack(new_conv), torch.clamp(cache_len + t, max=left)
