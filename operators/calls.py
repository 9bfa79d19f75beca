"""Per-call bookkeeping of the enrichment agents, as a pure operator.

The Faust agent (``stream.agents``) only decodes, calls ``CallTracker.handle``
and sends; everything it decides lives here and is tested without Kafka:

* finals repeated by an ASR worker's restart are dropped by their id
  (``utterance_id``, deterministic per call, channel and utterance);
* so are finals whose enriched event a killed agent had published but not
  yet recorded in its table (``published``: ids read back from the enriched
  topic when the agent starts);
* a per-call summary (utterances, intents seen, flags raised, recent ids,
  ended) is what the agent keeps in its Faust table, as a plain dict;
* each call's enrichment state (redaction memory across finals) stays in
  this worker, the least recently used calls forgotten past ``open_calls``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from operators.enrich import EnrichState, Enricher
from stream.events import EndOfStream, Enriched, Event, Final

__all__ = ["CallTracker"]


class CallTracker:
    """One worker's calls. ``handle`` maps (table entry, event) to (new table entry, enriched event)."""

    def __init__(self, enricher: Callable[[], Enricher], *, mask_profanity: bool = True, seen_ids: int = 64,
                 open_calls: int = 10000) -> None:
        self._enricher = enricher  # called once, at the first final: loading the models takes seconds
        self._loaded: Enricher | None = None
        self.mask_profanity = mask_profanity
        self.seen_ids = seen_ids
        self.open_calls = open_calls
        self._memory: OrderedDict[str, EnrichState] = OrderedDict()
        # Utterance ids already on the enriched topic when this worker started (stream.agents).
        self.published: set[str] = set()

    def handle(self, call_id: str, summary: dict[str, Any], event: Event) -> tuple[dict[str, Any] | None, Enriched | None]:
        """The call's new summary (None: unchanged) and the enriched event to publish, if any.

        Publish the enriched event before storing the summary: a worker that dies between
        the two enriches the final again rather than losing it.
        """
        if isinstance(event, EndOfStream):
            self._memory.pop(call_id, None)
            return {**summary, "ended": True}, None
        if not isinstance(event, Final):
            return None, None
        seen = list(summary.get("seen", []))
        if event.utterance_id in seen:
            return None, None
        if self._loaded is None:
            self._loaded = self._enricher()
        result = self._loaded.enrich(self._state(call_id), event, mask_profanity=self.mask_profanity)
        intents = dict(summary.get("intents", {}))
        if result.intent is not None:
            intents[result.intent.label] = intents.get(result.intent.label, 0) + 1
        flags = sorted(set(summary.get("flags", [])) | set(result.flags.flagged))
        new = {"utterances": summary.get("utterances", 0) + 1, "intents": intents, "flags": flags,
               "seen": (seen + [event.utterance_id])[-self.seen_ids :]}
        # Already published: enriched all the same, so the summary and the call's redaction
        # memory are as if this worker had published it, but not sent again.
        return new, (None if event.utterance_id in self.published else result)

    def _state(self, call_id: str) -> EnrichState:
        state = self._memory.pop(call_id, None) or EnrichState()
        self._memory[call_id] = state
        while len(self._memory) > self.open_calls:
            self._memory.popitem(last=False)
        return state
