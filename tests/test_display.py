"""The lines `callstream demo` and `callstream kafka-tail` print (stream.display)."""

import io

from stream.display import EventPrinter, format_event
from stream.events import ContentFlags, EndOfStream, Enriched, Final, IntentResult, Partial, Word

FINAL = Final("call-1", "customer", "call-1/customer/0", 0, "i lost my card",
              tuple(Word(w, 0.4 * i, 0.4 * i + 0.3, 0.9) for i, w in enumerate("i lost my card".split())),
              start=65.0, end=67.25)
ENRICHED = Enriched(FINAL, IntentResult("lost_or_stolen_card", 0.97), ContentFlags(flagged=("card",)),
                    redacted_text="i lost my [card]")


def test_final_and_enriched_lines():
    assert format_event(FINAL) == ("[01:05.0-01:07.2] customer | i lost my card\n"
                                   "                        i(0.90) lost(0.90) my(0.90) card(0.90)")
    enriched = ("                        enriched: intent=lost_or_stolen_card (0.97); flags=card; "
                "redacted: i lost my [card]")
    assert format_event(ENRICHED) == enriched
    assert format_event(ENRICHED, with_transcript=True) == f"{format_event(FINAL)}\n{enriched}"
    assert format_event(Enriched(FINAL, redacted_text=FINAL.text)).endswith("enriched: nothing flagged")
    unsure = Enriched(FINAL, IntentResult("card_linking", 0.5, needs_confirmation=True), redacted_text=FINAL.text)
    assert format_event(unsure).endswith("enriched: intent=card_linking (0.50, needs confirmation)")
    assert format_event(EndOfStream("call-1", audio_seconds=12.34)) == "-- end of stream call-1 (12.3 s of audio)"


def test_printer_skips_repeated_partials_and_heads_each_switch_of_stream():
    out = io.StringIO()
    printer = EventPrinter(partials=True, with_transcript=True, stream_headers=True, out=out)
    partial = Partial("call-2", "agent", "call-2/agent/0", 0, "hello")
    printer.show([partial, partial, ENRICHED, Partial("call-2", "agent", "call-2/agent/0", 0, "hello there")])
    assert out.getvalue().splitlines() == [
        "== call-2", "  ~    agent | hello",
        "== call-1", *format_event(ENRICHED, with_transcript=True).splitlines(),
        "== call-2", "  ~    agent | hello there",
    ]
    quiet = io.StringIO()
    EventPrinter(out=quiet).show([partial, FINAL])
    assert quiet.getvalue() == format_event(FINAL) + "\n"
