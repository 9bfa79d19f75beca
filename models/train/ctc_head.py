"""The streaming Conformer-CTC head over Whisper's encoder, and the exported streaming step.

``CtcHead`` turns the windowed encoder's 50 Hz features into character
log-probs with a few Conformer blocks (``models.train.conformer``: chunk-masked
self-attention over the chunk plus a left context, causal depthwise
convolutions, LayerNorm). ``forward`` runs whole utterances under the chunk
mask (training, and the reference of the parity tests); ``infer`` runs one
chunk with caches, and equals ``forward`` under the same mask.

``StreamingStep`` is what serving runs, exported as one ONNX graph: the
chunk's raw log-mel frames and the stream's caches in; the chunk's CTC
log-probs and the new caches out. Its encoder is Whisper's, fine-tuned to run
chunk by chunk with a key/value cache (``models.train.chunk_encoder``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.train.conformer import ConformerBlock, ConformerConfig, chunk_mask, stream_blocks
from models.train.chunk_encoder import ChunkedEncoder

__all__ = ["CtcHead", "HeadConfig", "StreamingStep"]


@dataclass(frozen=True)
class HeadConfig:
    input_dim: int = 384  # Whisper tiny's width
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ff_mult: int = 4
    conv_kernel: int = 15
    dropout: float = 0.1
    vocab_size: int = 29  # blank + space + apostrophe + a-z (models.train.tokenizer.VOCAB)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def conformer(self) -> ConformerConfig:
        return ConformerConfig(d_model=self.d_model, num_layers=self.num_layers, num_heads=self.num_heads,
                               ff_mult=self.ff_mult, conv_kernel=self.conv_kernel, dropout=self.dropout,
                               vocab_size=self.vocab_size, conv_norm="layer")


class CtcHead(nn.Module):
    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.config = cfg
        self.input = nn.Sequential(nn.LayerNorm(cfg.input_dim), nn.Linear(cfg.input_dim, cfg.d_model))
        self.blocks = nn.ModuleList(ConformerBlock(cfg.conformer()) for _ in range(cfg.num_layers))
        self.out = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, feats: Tensor, lengths: Tensor, chunk: int, left: int) -> Tensor:
        """feats (B, T, input_dim), lengths (B,) -> CTC log-probs (B, T, vocab) under the chunk mask."""
        x = self.input(feats)
        t = x.shape[1]
        valid = torch.arange(t, device=x.device)[None, :] < lengths[:, None]
        mask = chunk_mask(t, chunk, left, x.device)[None] & valid[:, None, :]
        for block in self.blocks:
            x, _, _ = block(x, mask)
        return F.log_softmax(self.out(x), dim=-1)

    def init_cache(self, batch: int, left: int) -> tuple[Tensor, Tensor, Tensor]:
        """Empty caches: attention (layers, B, left, d), conv (layers, B, d, kernel - 1), valid (B,)."""
        c = self.config
        return (torch.zeros(c.num_layers, batch, left, c.d_model),
                torch.zeros(c.num_layers, batch, c.d_model, c.conv_kernel - 1),
                torch.zeros(batch, dtype=torch.int64))

    def infer(self, feats: Tensor, att_cache: Tensor, conv_cache: Tensor, cache_len: Tensor
              ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One chunk: feats (B, C, input_dim) and caches -> log-probs (B, C, vocab) and new caches."""
        x, att, conv, lens = stream_blocks(self.blocks, self.input(feats), att_cache, conv_cache, cache_len)
        return F.log_softmax(self.out(x), dim=-1), att, conv, lens


class StreamingStep(nn.Module):
    """One streaming step of the whole acoustic model (the ONNX graph serving runs).

    feats (B, 2n + CONTEXT_MEL, mel): the chunk's n encoder frames' worth of raw log10-mel
    frames plus the look-ahead; mel_cache (B, LEFT_MEL, mel): the frames before them;
    enc_k_cache, enc_v_cache: the chunk encoder's keys and values; att_cache, conv_cache:
    the head's; cache_len (B,): the cached frames, the same count for the encoder and the head
    (both keep ``LEFT`` frames). Returns log_probs (B, n, vocab) and the new caches.
    """

    def __init__(self, encoder: ChunkedEncoder, head: CtcHead) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, feats: Tensor, mel_cache: Tensor, enc_k_cache: Tensor, enc_v_cache: Tensor, att_cache: Tensor,
                conv_cache: Tensor, cache_len: Tensor) -> tuple[Tensor, ...]:
        enc, new_mel, k, v, _ = self.encoder.step(feats, mel_cache, enc_k_cache, enc_v_cache, cache_len)
        log_probs, att, conv, lens = self.head.infer(enc, att_cache, conv_cache, cache_len)
        return log_probs, new_mel, k, v, att, conv, lens
