"""Per-call bookkeeping of the enrichment agents, as a pure operator.

The Faust agent (``stream.agents``) only decodes, calls ``CallTracker.handle``
and sends; everything it decides lives here and is tested without Kafka:

* finals repeated by an ASR worker's restart are dropped by their id
  (``utterance_id``, deterministic per call, channel and utterance), among
  the call's recent ids;
* so are finals whose enriched event is already on the enriched topic
  (``published``: ids the agent reads back when its partitions are
  assigned), which a worker killed after sending them leaves behind; they
  are still enriched, so the call's redaction memory stays whole;
* each call's state (redaction memory across finals, recent ids) stays in
  this worker, the least recently used calls forgotten past ``open_calls``.

The state lives in memory, not in a Faust table: restoring a table from its
changelog when a worker starts is what made faust-streaming skip finals
after a restart (docs/reliability.md).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from operators.enrich import EnrichState, Enricher
from stream.events import EndOfStream, Enriched, Event, Final

__all__ = ["CallTracker"]


@dataclass
class _Call:
    seen: deque[str]  # recent utterance ids, at most CallTracker.seen_ids
    enrich: EnrichState = field(default_factory=EnrichState)


class CallTracker:
    """One worker's calls. ``handle`` maps an event to the enriched event to publish, if any."""

    def __init__(self, enricher: Callable[[], Enricher], *, mask_profanity: bool = True, seen_ids: int = 64,
                 open_calls: int = 10000) -> None:  # fmt: skip
        self._enricher = enricher  # called once, at the first final: loading the models takes seconds
        self._loaded: Enricher | None = None
        self.mask_profanity = mask_profanity
        self.seen_ids = seen_ids
        self.open_calls = open_calls
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        # Utterance ids already on the enriched topic (stream.agents reads them back).
        self.published: set[str] = set()

    def handle(self, call_id: str, event: Event) -> Enriched | None:
        """The enriched event to publish for ``event``, or None (not a final, a repeat, or already published)."""
        if isinstance(event, EndOfStream):
            self._calls.pop(call_id, None)
            return None
        if not isinstance(event, Final):
            return None
        call = self._call(call_id)
        if event.utterance_id in call.seen:
            return None
        if self._loaded is None:
            self._loaded = self._enricher()
        result = self._loaded.enrich(call.enrich, event, mask_profanity=self.mask_profanity)
        call.seen.append(event.utterance_id)
        return None if event.utterance_id in self.published else result

    def recent(self, call_id: str) -> list[str]:
        """The call's recent utterance ids, oldest first (empty for a call this worker does not hold)."""
        call = self._calls.get(call_id)
        return list(call.seen) if call else []

    def _call(self, call_id: str) -> _Call:
        call = self._calls.pop(call_id, None) or _Call(deque(maxlen=self.seen_ids))
        self._calls[call_id] = call
        while len(self._calls) > self.open_calls:
            self._calls.popitem(last=False)
        return call
