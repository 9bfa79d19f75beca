"""Streaming CTC decoding with endpointing: log-probs in, partial and final events out.

``GreedyDecoder`` takes the best token per frame. Its output never rewrites
itself, so every word but the last is stable. Silence is judged per frame
from the CTC posteriors: a frame whose best token is blank or the word
separator is silent. Endpoints follow three rules (``EndpointConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream.events import Event, Final, Hypothesis, Partial, Word

__all__ = ["EndpointConfig", "GreedyDecoder", "GreedyState", "words_from_tokens"]


@dataclass(frozen=True)
class EndpointConfig:
    silence_after_speech_s: float = 0.8  # trailing silence that ends an utterance with speech
    silence_no_speech_s: float = 5.0  # silence after which an utterance with no speech restarts
    max_utterance_s: float = 20.0  # an utterance ends at the first silent frame after this


@dataclass
class _Token:
    id: int
    frame: int  # global encoder frame
    prob: float


@dataclass
class GreedyState:
    stream_id: str
    channel: str
    endpoint: EndpointConfig
    interim: bool = True
    utterance_index: int = 0
    frame: int = 0  # next global encoder frame
    utt_start: int = 0  # global frame where the open utterance began
    prev_id: int = 0
    silence_run: int = 0  # consecutive silent frames
    tokens: list[_Token] = field(default_factory=list)


def words_from_tokens(
    tokens: list[tuple[str, int, float]], frame_seconds: float
) -> tuple[Word, ...]:
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


class GreedyDecoder:
    """Best path per frame. Shared part: vocabulary and timing; per stream: ``GreedyState``."""

    def __init__(self, vocab: tuple[str, ...], frame_seconds: float, endpoint: EndpointConfig | None = None) -> None:
        if not vocab or vocab[0] != "":
            raise ValueError(f"expected vocab[0] to be the CTC blank '', got {vocab[:1]}")
        self.vocab = vocab
        self.frame_seconds = frame_seconds
        self.endpoint = endpoint or EndpointConfig()
        self._silent_ids = np.array([0] + [i for i, t in enumerate(vocab) if t == " "])

    def new_state(self, stream_id: str, channel: str, *, endpoint: EndpointConfig | None = None,
                  interim: bool = True) -> GreedyState:
        return GreedyState(stream_id=stream_id, channel=channel, endpoint=endpoint or self.endpoint, interim=interim)

    def feed(self, state: GreedyState, log_probs: np.ndarray) -> list[Event]:
        """Decode float32 log-probs of shape (n, vocab) that follow the previous ones."""
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self.vocab):
            raise ValueError(f"expected log-probs of shape (n, {len(self.vocab)}), got {log_probs.shape}")
        events: list[Event] = []
        best = log_probs.argmax(axis=1)
        probs = np.exp(log_probs[np.arange(best.size), best])
        ep = state.endpoint
        fs = self.frame_seconds
        for k in range(best.size):
            tok = int(best[k])
            silent = bool(np.isin(tok, self._silent_ids))
            if tok != 0 and tok != state.prev_id:
                state.tokens.append(_Token(tok, state.frame, float(probs[k])))
            state.prev_id = tok
            state.silence_run = state.silence_run + 1 if silent else 0
            state.frame += 1
            has_speech = any(self.vocab[t.id] != " " for t in state.tokens)
            length_s = (state.frame - state.utt_start) * fs
            if has_speech and state.silence_run * fs >= ep.silence_after_speech_s:
                events.append(self._final(state, "silence"))
            elif has_speech and silent and length_s >= ep.max_utterance_s:
                events.append(self._final(state, "max_length"))
            elif not has_speech and state.silence_run * fs >= ep.silence_no_speech_s:
                self._reset(state)
        if state.interim and any(self.vocab[t.id] != " " for t in state.tokens):
            events.append(self._partial(state))
        return events

    def flush(self, state: GreedyState, reason: str = "end_of_stream") -> list[Event]:
        """Close the open utterance: a final if it holds speech."""
        if any(self.vocab[t.id] != " " for t in state.tokens):
            return [self._final(state, reason)]
        self._reset(state)
        return []

    def _words(self, state: GreedyState) -> tuple[Word, ...]:
        return words_from_tokens([(self.vocab[t.id], t.frame, t.prob) for t in state.tokens], self.frame_seconds)

    def _partial(self, state: GreedyState) -> Partial:
        words = self._words(state)
        ends_open = bool(state.tokens) and self.vocab[state.tokens[-1].id] != " "
        return Partial(
            stream_id=state.stream_id, channel=state.channel,
            utterance_id=f"{state.stream_id}/{state.channel}/{state.utterance_index}",
            utterance_index=state.utterance_index, text=" ".join(w.text for w in words), words=words,
            stable=len(words) - 1 if ends_open else len(words),
            start=round(state.utt_start * self.frame_seconds, 3), end=round(state.frame * self.frame_seconds, 3),
        )

    def _final(self, state: GreedyState, reason: str) -> Final:
        words = self._words(state)
        text = " ".join(w.text for w in words)
        score = float(np.sum(np.log([max(t.prob, 1e-10) for t in state.tokens])))
        final = Final(
            stream_id=state.stream_id, channel=state.channel,
            utterance_id=f"{state.stream_id}/{state.channel}/{state.utterance_index}",
            utterance_index=state.utterance_index, text=text, words=words, nbest=(Hypothesis(text, score),),
            start=round(state.utt_start * self.frame_seconds, 3), end=round(state.frame * self.frame_seconds, 3),
            endpoint=reason,
        )
        state.utterance_index += 1
        self._reset(state)
        return final

    def _reset(self, state: GreedyState) -> None:
        state.tokens = []
        state.utt_start = state.frame
        state.silence_run = 0
