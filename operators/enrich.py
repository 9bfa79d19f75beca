"""Enrich final transcripts: intent, toxicity, abuse categories and profanity flags, PII/PCI redaction.

This is the operator the Faust agents and the in-process pipeline both call.
``Enricher`` holds the shared, read-only models (intent classifier, toxicity
model; the toxicity model also reads the intent encoder's embedding of each
final when it was trained on that encoder); ``EnrichState`` is per call and holds, per channel, what redaction
must remember across finals (a card number read over two utterances).

The module-level ``new_state()`` and ``enrich()`` use one default
``Enricher``, loaded on first use from the bundled heads and the encoder that
set-up builds (``python -m models.encoder_export``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from operators.content import ToxicityModel
from operators.redaction import RedactionConfig, RedactionState, is_redacted, mask_text, redact, spans_for_words
from operators.intent import IntentClassifier, IntentConfig, load_classifier
from stream.events import ContentFlags, Enriched, Final, IntentResult, RedactedSpan, Word

__all__ = [
    "EnrichConfig",
    "EnrichState",
    "Enricher",
    "default_enricher",
    "enrich",
    "new_state",
]


@dataclass(frozen=True)
class EnrichConfig:
    """What to load and run. ``intent`` None turns intent classification off."""

    intent: IntentConfig | None = field(default_factory=IntentConfig)
    toxicity_model: Path | None = None  # None: the bundled Davidson model
    redaction: RedactionConfig = field(default_factory=RedactionConfig)


@dataclass
class EnrichState:
    """Per-call state: redaction memory per channel ("agent", "customer", ...)."""

    redaction: dict[str, RedactionState] = field(default_factory=dict)


def _words_of(final: Final) -> tuple[Word, ...]:
    """The final's words; a final without word timings gets one word per token spanning the utterance."""
    if final.words:
        return final.words
    return tuple(Word(t, final.start, final.end, 1.0) for t in final.text.split())


def _unmasked(text: str) -> str:
    """``text`` without the words the recogniser redacted (``####``): the encoder would read the
    marks as words (the sample call's card number, all marks, came out ``atm_support`` at 0.66),
    and a turn that is only a redacted number asks for nothing."""
    return " ".join(w for w in text.split() if not is_redacted(w))


class Enricher:
    """Shared models; ``enrich(state, final)`` is pure apart from updating ``state``."""

    def __init__(
        self,
        intent: IntentClassifier | None,
        toxicity: ToxicityModel,
        redaction: RedactionConfig | None = None,
    ) -> None:
        self.intent = intent
        self.toxicity = toxicity
        self.redaction = redaction or RedactionConfig()

    @classmethod
    def load(cls, config: EnrichConfig | None = None) -> "Enricher":
        """Load the models ``config`` names; raises ``stream.errors.ModelError`` when one is missing."""
        cfg = config or EnrichConfig()
        intent = load_classifier(cfg.intent) if cfg.intent is not None else None
        return cls(intent, ToxicityModel.load(cfg.toxicity_model), cfg.redaction)

    def new_state(self) -> EnrichState:
        return EnrichState()

    def enrich(self, state: EnrichState, final: Final, *, mask_profanity: bool = True) -> Enriched:
        """One ``Enriched`` for ``final``; updates ``state`` (redaction memory of its channel)."""
        return self.enrich_batch([state], [final], mask_profanity=mask_profanity)[0]

    def enrich_batch(
        self, states: Sequence[EnrichState], finals: Sequence[Final], *, mask_profanity: bool = True
    ) -> list[Enriched]:
        """``enrich`` for finals of several calls at once (the float32 encoder embeds them in one batch)."""
        if len(states) != len(finals):
            raise ValueError(f"expected one state per final, got {len(states)} states and {len(finals)} finals")
        intents: list[IntentResult | None] = [None] * len(finals)
        embeddings: list[np.ndarray | None] = [None] * len(finals)
        if self.intent is not None:
            texts = [_unmasked(f.text) for f in finals]
            live = [i for i, t in enumerate(texts) if t]
            results, x = self.intent.embed_and_classify([texts[i] for i in live])
            shared = self.toxicity.uses_embeddings_of(self.intent.encoder.name)
            for row, (i, result) in enumerate(zip(live, results)):
                intents[i] = result
                embeddings[i] = x[row] if shared else None
        out = []
        for state, final, intent, embedding in zip(states, finals, intents, embeddings):
            words = _words_of(final)
            tokens = [w.text for w in words]
            red_state = state.redaction.get(final.channel, RedactionState())
            state.redaction[final.channel], items = redact(red_state, tokens, self.redaction)
            # The recogniser's own redaction (``final.redactions``) comes first; what the
            # enricher finds in the rest is added to it.
            spans = list(final.redactions) + list(spans_for_words(items, words))
            taken = {i for s in spans for i in range(s.first_word, s.last_word + 1)}
            profane = [i for i, t in enumerate(tokens) if i not in taken and self.toxicity.profane(t)]
            if mask_profanity:
                spans += [RedactedSpan("profanity", i, i, words[i].start, words[i].end) for i in profane]
            spans.sort(key=lambda s: s.first_word)
            # The phrase rules run once: a match names its categories and makes the score 1.0.
            abuse = self.toxicity.categories(final.text)
            if abuse:
                toxicity = 1.0
            elif final.text.strip():
                toxicity = self.toxicity.score(final.text, embedding, rules=False)
            else:
                toxicity = 0.0
            flagged = sorted(
                {s.kind for s in spans if s.kind != "profanity"}
                | ({"profanity"} if profane else set())
                | ({"toxicity"} if toxicity >= self.toxicity.threshold_for(embedding) else set())
                | set(abuse)
            )
            flags = ContentFlags(
                profanity=1.0 if profane else 0.0,
                toxicity=toxicity,
                flagged=tuple(flagged),
                spans=tuple(spans),
            )
            out.append(Enriched(transcript=final, intent=intent, flags=flags, redacted_text=mask_text(tokens, spans)))
        return out


@functools.cache
def default_enricher() -> Enricher:
    """The process-wide ``Enricher`` with the bundled models, loaded once."""
    return Enricher.load()


def new_state() -> EnrichState:
    """A fresh per-call state for ``enrich``."""
    return EnrichState()


def enrich(state: EnrichState, final: Final, *, mask_profanity: bool = True) -> Enriched:
    """Enrich ``final`` with the default models; updates ``state``. See ``Enricher.enrich``."""
    return default_enricher().enrich(state, final, mask_profanity=mask_profanity)
