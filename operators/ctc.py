"""Streaming CTC decoding with endpointing: log-probs in, partial and final events out.

Two decoders share the endpointing and event logic:

* ``GreedyDecoder``: the best token per frame. Its output never rewrites
  itself, so every word but the last is stable.
* ``BeamDecoder``: CTC prefix beam search with KenLM and hotwords. The
  algorithm is pyctcdecode's ``decode_beams`` (same beam tuples, merging,
  pruning, LM and hotword scoring), run frame by frame with its state kept
  per stream. pyctcdecode 0.5.0 (the current release) only decodes whole
  utterances, so re-using it for partials would re-decode from the start of
  the utterance at every chunk; the frame loop is therefore written here,
  while the language-model scoring, hotword scorer and beam merging and
  pruning helpers are pyctcdecode's own (pinned to 0.5.0).

Silence is judged per frame from the CTC posteriors: a frame whose best
token is blank or the word separator is silent. Endpoints follow three
rules (``EndpointConfig``); after one the decoder resets its utterance state
and keeps the stream.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kenlm
import numpy as np
from pyctcdecode import decoder as _pcd
from pyctcdecode.alphabet import Alphabet
from pyctcdecode.constants import LOG_BASE_CHANGE_FACTOR
from pyctcdecode.language_model import (
    HotwordScorer,
    LanguageModel,
    MultiLanguageModel,
    load_unigram_set_from_arpa,
)

from stream.events import Event, Final, Hypothesis, Partial, Word

__all__ = [
    "BeamConfig",
    "BeamDecoder",
    "BeamState",
    "DecoderState",
    "EndpointConfig",
    "GreedyDecoder",
    "GreedyState",
    "LanguageModelConfig",
    "words_from_tokens",
]

_NULL_FRAMES = (-1, -1)
_PARTIAL_CACHE_SIZE = 200_000  # word prefixes whose LM score the decoder keeps for all its streams
# pyctcdecode's beam tuple: (text, next_word, word_part, last_char, text_frames, part_frames, logit_score)
_Beam = tuple[str, str, str, str, list[tuple[int, int]], tuple[int, int], float]


@dataclass(frozen=True)
class EndpointConfig:
    silence_after_speech_s: float = 0.8  # trailing silence that ends an utterance with speech
    silence_no_speech_s: float = 5.0  # silence after which an utterance with no speech restarts
    max_utterance_s: float = 20.0  # an utterance ends at the first silent frame after this


@dataclass(frozen=True)
class BeamConfig:
    beam_width: int = 16
    beam_prune_logp: float = -10.0  # drop beams this far below the best
    token_min_logp: float = -5.0  # ignore tokens below this log-prob in a frame
    nbest: int = 3
    # Default weight of hotwords given without one. pyctcdecode's default is 10; on the hotword
    # bench (8 unknown names, 40 utterances) 20 found 3x more names (0.30 vs 0.10) with the same
    # dev WER; 30 made the dev WER worse.
    hotword_weight: float = 20.0


class _WordLanguageModel(LanguageModel):
    """pyctcdecode's LanguageModel, except that an empty word costs nothing.

    pyctcdecode ends a word at every space token. A model that emits the space in pauses
    (ours does: training joins utterances with a quiet gap and a space between) makes a
    space after a space, or a final one, end an empty word, which pyctcdecode scores as an
    unknown word: about -20 at alpha 0.5, so the LM turned a clear "up" into "u". Here an
    empty word keeps the LM state and adds only the end-of-sentence score when it is last.
    The parity reference (``BeamDecoder.reference``) uses the same scorer.
    """

    def score(self, prev_state: Any, word: str, is_last_word: bool = False) -> tuple[float, Any]:
        if word:
            return super().score(prev_state, word, is_last_word)
        raw = self._get_raw_end_score(prev_state) if is_last_word else 0.0
        return self.alpha * raw * LOG_BASE_CHANGE_FACTOR, prev_state


@dataclass(frozen=True)
class LanguageModelConfig:
    path: Path  # KenLM binary or ARPA
    unigrams: Path | None = None  # one word per line; needed with a binary LM
    alpha: float = 0.5  # LM weight
    beta: float = 1.0  # word insertion bonus
    unk_score_offset: float = -10.0
    # More LMs mixed in (e.g. general English beside the domain LM): pyctcdecode's
    # MultiLanguageModel averages their scores, each with its own alpha and beta.
    mix: tuple["LanguageModelConfig", ...] = ()

    def language_model(self) -> LanguageModel | MultiLanguageModel:
        """The pyctcdecode scorer of this LM and its mix."""
        models = []
        for cfg in (self, *self.mix):
            if cfg.unigrams is not None:
                unigrams = [w for w in Path(cfg.unigrams).read_text().split() if w]
            else:
                unigrams = load_unigram_set_from_arpa(str(cfg.path)) if str(cfg.path).endswith(".arpa") else None
            models.append(_WordLanguageModel(kenlm.Model(str(cfg.path)), unigrams, alpha=cfg.alpha,
                                             beta=cfg.beta, unk_score_offset=cfg.unk_score_offset))
        return models[0] if len(models) == 1 else MultiLanguageModel(models)


@dataclass
class DecoderState:
    """Per-stream state shared by both decoders."""

    stream_id: str
    channel: str
    endpoint: EndpointConfig
    interim: bool = True
    utterance_index: int = 0
    frame: int = 0  # next global encoder frame
    utt_start: int = 0  # global frame where the open utterance began
    silence_run: int = 0  # consecutive silent frames
    speech: bool = False  # the open utterance has a non-silent frame
    confidences: list[float] = field(default_factory=list)  # per utterance frame: best non-blank posterior


@dataclass
class _Token:
    id: int
    frame: int  # global encoder frame
    prob: float


@dataclass
class GreedyState(DecoderState):
    prev_id: int = 0
    tokens: list[_Token] = field(default_factory=list)


@dataclass
class BeamState(DecoderState):
    hotwords: Any = None  # _Hotwords for this stream
    beams: list[_Beam] = field(default_factory=list)
    lm_parts: list[float] = field(default_factory=list)  # per beam: its score minus its logit score
    lm_cache: dict[tuple[str, bool], tuple[float, float, Any]] = field(default_factory=dict)
    partial_cache: dict[str, float] = field(default_factory=dict)


def words_from_tokens(tokens: list[tuple[str, int, float]], frame_seconds: float) -> tuple[Word, ...]:
    """(char, frame, prob) per emitted token -> words with times and confidences."""
    words: list[Word] = []
    cur: list[tuple[str, int, float]] = []

    def close() -> None:
        if cur:
            words.append(
                Word(
                    text="".join(c for c, _, _ in cur),
                    start=round(cur[0][1] * frame_seconds, 3),
                    end=round((cur[-1][1] + 1) * frame_seconds, 3),
                    confidence=round(float(np.mean([p for _, _, p in cur])), 4),
                )
            )
            cur.clear()

    for tok in tokens:
        if tok[0] == " ":
            close()
        else:
            cur.append(tok)
    close()
    return tuple(words)


class _StreamingCtc:
    """Endpointing and events; subclasses consume frames."""

    def __init__(self, vocab: tuple[str, ...], frame_seconds: float, endpoint: EndpointConfig | None = None) -> None:
        if not vocab or vocab[0] != "":
            raise ValueError(f"expected vocab[0] to be the CTC blank '', got {vocab[:1]}")
        self.vocab = vocab
        self.frame_seconds = frame_seconds
        self.endpoint = endpoint or EndpointConfig()
        self._silent = np.zeros(len(vocab), dtype=bool)
        self._silent[0] = True
        self._silent[[i for i, t in enumerate(vocab) if t == " "]] = True

    def feed(self, state: DecoderState, log_probs: np.ndarray) -> list[Event]:
        """Decode float32 log-probs of shape (n, vocab) that follow the previous ones."""
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.vocab):
            raise ValueError(f"expected log-probs of shape (n, {len(self.vocab)}), got {log_probs.shape}")
        events: list[Event] = []
        best = log_probs.argmax(axis=1)
        nonblank_best = np.exp(log_probs[:, 1:].max(axis=1))
        ep, fs = state.endpoint, self.frame_seconds
        for k in range(best.size):
            silent = bool(self._silent[best[k]])
            self._frame(state, log_probs[k], int(best[k]))
            state.confidences.append(float(nonblank_best[k]))
            state.speech |= not silent
            state.silence_run = state.silence_run + 1 if silent else 0
            state.frame += 1
            length_s = (state.frame - state.utt_start) * fs
            if state.speech and state.silence_run * fs >= ep.silence_after_speech_s:
                events.extend(self._end(state, "silence"))
            elif state.speech and silent and length_s >= ep.max_utterance_s:
                events.extend(self._end(state, "max_length"))
            elif not state.speech and state.silence_run * fs >= ep.silence_no_speech_s:
                self._reset(state)
        if state.interim and state.speech:
            partial = self._partial(state)
            if partial.text:
                events.append(partial)
        return events

    def flush(self, state: DecoderState, reason: str = "end_of_stream", end_s: float | None = None) -> list[Event]:
        """Close the open utterance: a final if its best hypothesis has any text.

        ``end_s`` is the stream time where the utterance ended when that is past the frames
        decoded so far (an endpoint found on the audio's energy: the audio after the decoded
        frames is quiet); the final's ``end`` is then that time.
        """
        return self._end(state, reason, end_s)

    def _end(self, state: DecoderState, reason: str, end_s: float | None = None) -> list[Event]:
        hyps, spans = self._finalize(state)
        text = hyps[0].text if hyps else ""
        events: list[Event] = []
        if text:
            events.append(
                Final(
                    stream_id=state.stream_id, channel=state.channel, utterance_id=self._utt_id(state),
                    utterance_index=state.utterance_index, text=text, words=self._words(state, text, spans),
                    nbest=tuple(hyps), start=round(state.utt_start * self.frame_seconds, 3),
                    end=round(max(state.frame * self.frame_seconds, end_s or 0.0), 3), endpoint=reason,
                )
            )
            state.utterance_index += 1
        self._reset(state)
        return events

    def _partial(self, state: DecoderState) -> Partial:
        text, stable, spans = self._current(state)
        words = self._words(state, text, spans)
        return Partial(
            stream_id=state.stream_id, channel=state.channel, utterance_id=self._utt_id(state),
            utterance_index=state.utterance_index, text=text, words=words, stable=min(stable, len(words)),
            start=round(state.utt_start * self.frame_seconds, 3), end=round(state.frame * self.frame_seconds, 3),
        )

    def _words(self, state: DecoderState, text: str, spans: list[tuple[int, int]]) -> tuple[Word, ...]:
        """Words of ``text`` with (start, end) utterance-relative frame spans -> timed words."""
        fs, base = self.frame_seconds, state.utt_start
        out = []
        for w, (a, b) in zip(text.split(), spans):
            b = max(b, a + 1)
            conf = float(np.mean(state.confidences[a:b])) if state.confidences[a:b] else 0.0
            out.append(Word(w, round((base + a) * fs, 3), round((base + b) * fs, 3), round(conf, 4)))
        return tuple(out)

    @staticmethod
    def _utt_id(state: DecoderState) -> str:
        return f"{state.stream_id}/{state.channel}/{state.utterance_index}"

    def _reset(self, state: DecoderState) -> None:
        state.utt_start = state.frame
        state.silence_run = 0
        state.speech = False
        state.confidences = []

    # Subclass hooks.
    def _frame(self, state: Any, log_probs: np.ndarray, best: int) -> None:
        raise NotImplementedError

    def _current(self, state: Any) -> tuple[str, int, list[tuple[int, int]]]:
        """(text, stable word count, word frame spans) of the open utterance."""
        raise NotImplementedError

    def _finalize(self, state: Any) -> tuple[list[Hypothesis], list[tuple[int, int]]]:
        """(n-best, word frame spans of the best) of the open utterance."""
        raise NotImplementedError


class GreedyDecoder(_StreamingCtc):
    """Best path per frame. Shared part: vocabulary and timing; per stream: ``GreedyState``."""

    def new_state(self, stream_id: str, channel: str, *, endpoint: EndpointConfig | None = None,
                  interim: bool = True, hotwords: Iterable[tuple[str, float]] = ()) -> GreedyState:
        return GreedyState(stream_id=stream_id, channel=channel, endpoint=endpoint or self.endpoint, interim=interim)

    def _frame(self, state: GreedyState, log_probs: np.ndarray, best: int) -> None:
        if best != 0 and best != state.prev_id:
            state.tokens.append(_Token(best, state.frame - state.utt_start, float(np.exp(log_probs[best]))))
        state.prev_id = best

    def _spans(self, state: GreedyState) -> tuple[str, list[tuple[int, int]], bool]:
        words = words_from_tokens([(self.vocab[t.id], t.frame, t.prob) for t in state.tokens], 1.0)
        open_word = bool(state.tokens) and self.vocab[state.tokens[-1].id] != " "
        return " ".join(w.text for w in words), [(int(w.start), int(w.end)) for w in words], open_word

    def _current(self, state: GreedyState) -> tuple[str, int, list[tuple[int, int]]]:
        text, spans, open_word = self._spans(state)
        return text, len(spans) - 1 if open_word else len(spans), spans

    def _finalize(self, state: GreedyState) -> tuple[list[Hypothesis], list[tuple[int, int]]]:
        text, spans, _ = self._spans(state)
        score = float(np.sum(np.log([max(t.prob, 1e-10) for t in state.tokens])))
        return [Hypothesis(text, round(score, 4))], spans

    def _reset(self, state: GreedyState) -> None:
        super()._reset(state)
        state.tokens = []
        state.prev_id = 0


class _Hotwords:
    """pyctcdecode's HotwordScorer, one per distinct weight, behind its own interface."""

    def __init__(self, hotwords: Iterable[tuple[str, float]]) -> None:
        by_weight: dict[float, list[str]] = defaultdict(list)
        for phrase, weight in hotwords:
            phrase = " ".join(re.sub(r"[^a-z' ]", " ", phrase.lower()).split())
            if phrase:
                by_weight[float(weight)].append(phrase)
        self._scorers = [HotwordScorer.build_scorer(p, weight=w) for w, p in sorted(by_weight.items())]

    def __contains__(self, item: str) -> bool:
        return any(item in s for s in self._scorers)

    def score(self, text: str) -> float:
        return sum(s.score(text) for s in self._scorers)

    def score_partial_token(self, token: str) -> float:
        return sum(s.score_partial_token(token) for s in self._scorers)


class BeamDecoder(_StreamingCtc):
    """Streaming CTC prefix beam search (pyctcdecode's algorithm) with optional KenLM and hotwords."""

    def __init__(
        self,
        vocab: tuple[str, ...],
        frame_seconds: float,
        endpoint: EndpointConfig | None = None,
        *,
        beam: BeamConfig | None = None,
        lm: LanguageModelConfig | None = None,
        hotwords: Iterable[tuple[str, float]] = (),
    ) -> None:
        super().__init__(vocab, frame_seconds, endpoint)
        self.beam = beam or BeamConfig()
        self.global_hotwords = tuple(hotwords)
        # The decoder object supplies the LM scoring (its _get_lm_beams) so that scores equal
        # decode_beams' exactly; its frame loop is not used.
        self._reference = _pcd.BeamSearchDecoderCTC(
            Alphabet.build_alphabet(list(vocab)), lm.language_model() if lm is not None else None
        )
        self._idx2vocab = self._reference._idx2vocab
        self._lm = self._reference._language_model
        self._partial_scores: dict[str, float] = {}

    @property
    def reference(self) -> Any:
        """The pyctcdecode decoder with the same LM, for whole-utterance parity checks."""
        return self._reference

    def new_state(self, stream_id: str, channel: str, *, endpoint: EndpointConfig | None = None,
                  interim: bool = True, hotwords: Iterable[tuple[str, float]] = ()) -> BeamState:
        default_weight = self.beam.hotword_weight
        merged = [(p, w if w > 0 else default_weight) for p, w in (*self.global_hotwords, *hotwords)]
        state = BeamState(stream_id=stream_id, channel=channel, endpoint=endpoint or self.endpoint,
                          interim=interim, hotwords=_Hotwords(merged))
        self._reset(state)
        return state

    def _reset(self, state: BeamState) -> None:
        super()._reset(state)
        start = None if self._lm is None else self._lm.get_start_state()
        state.beams = [("", "", "", "", [], _NULL_FRAMES, 0.0)]
        state.lm_parts = [0.0]
        state.lm_cache = {("", False): (0.0, 0.0, start)}
        state.partial_cache = {}

    def _frame(self, state: BeamState, log_probs: np.ndarray, best: int) -> None:
        # Same preprocessing as decode_beams: log-softmax output clipped at MIN_TOKEN_CLIP_P.
        logit_col = np.clip(log_probs, np.log(_pcd.MIN_TOKEN_CLIP_P), 0)
        frame_idx = state.frame - state.utt_start
        candidates = np.flatnonzero(logit_col >= self.beam.token_min_logp)
        if best == 0 and candidates.size <= 1:
            self._blank_frame(state, float(logit_col[0]))
            return
        idx_list = set(candidates) | {best}
        new_beams: list[_Beam] = []
        for idx_char in idx_list:
            p_char = float(logit_col[idx_char])
            char = self._idx2vocab[idx_char]
            for text, next_word, word_part, last_char, text_frames, part_frames, score in state.beams:
                if char == "" or last_char == char:
                    part = part_frames if char == "" else (part_frames[0], frame_idx + 1)
                    new_beams.append((text, next_word, word_part, char, text_frames, part, score + p_char))
                elif char == " ":
                    frames = text_frames if word_part == "" else text_frames + [part_frames]
                    new_beams.append((text, word_part, "", char, frames, _NULL_FRAMES, score + p_char))
                else:
                    part = (frame_idx, frame_idx + 1) if part_frames[0] < 0 else (part_frames[0], frame_idx + 1)
                    new_beams.append((text, next_word, word_part + char, char, text_frames, part, score + p_char))
        merged = _pcd._merge_beams(new_beams)
        if self._lm is not None:
            self._fill_partial_scores(state, merged)
        scored = self._reference._get_lm_beams(merged, state.hotwords, state.lm_cache, state.partial_cache)
        top = max(b[-1] for b in scored)
        scored = [b for b in scored if b[-1] >= top + self.beam.beam_prune_logp]
        trimmed = _pcd._sort_and_trim_beams(scored, self.beam.beam_width)
        state.beams = [b[:-1] for b in trimmed]
        state.lm_parts = [b[-1] - b[-2] for b in trimmed]

    def _fill_partial_scores(self, state: BeamState, beams: list[_Beam]) -> None:
        """Put the LM's score of each new partial word into the stream's cache from a shared one.

        _get_lm_beams caches these per stream only, and with two LMs mixed each miss costs two
        trie walks and a numpy mean: half of all decoding time in the profile. A word prefix
        scores the same for every stream (hotword prefixes aside, which stay per stream), so
        the decoder keeps one cache for all of them.
        """
        local, shared = state.partial_cache, self._partial_scores
        for beam in beams:
            part = beam[2]
            if part and part not in local and part not in state.hotwords:
                score = shared.get(part)
                if score is None:
                    if len(shared) >= _PARTIAL_CACHE_SIZE:
                        shared.clear()
                    score = shared[part] = self._lm.score_partial_token(part)
                local[part] = score

    def _blank_frame(self, state: BeamState, p_blank: float) -> None:
        """A frame where only blank passes token_min_logp: the general step, without the LM calls.

        Every beam takes the blank, so only beams that differ by their last character merge, and
        no text changes: each beam's LM and hotword part stays what it was. Silence and the blank
        frames between characters are such frames (37% of the dev frames with the bundled
        model). It gives the same beams and scores as the general step.
        """
        merged: dict[tuple[str, str], list[Any]] = {}
        for (text, next_word, word_part, _, text_frames, part_frames, score), lm in zip(state.beams, state.lm_parts):
            score += p_blank
            key = (text, word_part)  # next_word is always "" here: _get_lm_beams merged it into text
            if key in merged:
                score = _pcd._sum_log_scores(merged[key][6], score)
            merged[key] = [text, next_word, word_part, "", text_frames, part_frames, score, lm]
        beams = sorted(merged.values(), key=lambda b: b[6] + b[7], reverse=True)
        floor = beams[0][6] + beams[0][7] + self.beam.beam_prune_logp
        kept = [b for b in beams if b[6] + b[7] >= floor]
        state.beams = [tuple(b[:7]) for b in kept]
        state.lm_parts = [b[7] for b in kept]

    def _current(self, state: BeamState) -> tuple[str, int, list[tuple[int, int]]]:
        text, _, word_part, _, frames, part, _ = state.beams[0]
        full = _pcd._normalize_whitespace(f"{text} {word_part}")
        spans = frames + ([part] if word_part else [])
        # Every future beam extends a live one, so words all live beams agree on cannot change.
        words = [b[0].split() for b in state.beams]
        stable = 0
        for column in zip(*words):
            if any(w != column[0] for w in column):
                break
            stable += 1
        return full, stable, spans

    def _finalize(self, state: BeamState) -> tuple[list[Hypothesis], list[tuple[int, int]]]:
        """The end-of-utterance step of decode_beams: score the last word and </s>, then rank."""
        ends: list[_Beam] = []
        for text, _, word_part, _, frame_list, frames, score in state.beams:
            times = frame_list if word_part == "" else frame_list + [frames]
            ends.append((text, word_part, "", "", times, _NULL_FRAMES, score))
        scored = self._reference._get_lm_beams(
            _pcd._merge_beams(ends), state.hotwords, state.lm_cache, state.partial_cache, is_eos=True
        )
        top = max(b[-1] for b in scored)
        scored = [b for b in scored if b[-1] >= top + self.beam.beam_prune_logp]
        trimmed = _pcd._sort_and_trim_beams(scored, self.beam.beam_width)
        hyps = [Hypothesis(_pcd._normalize_whitespace(b[0]), round(float(b[-1]), 4)) for b in trimmed]
        return hyps[: self.beam.nbest], list(trimmed[0][4]) if trimmed else []
