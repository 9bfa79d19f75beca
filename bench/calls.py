"""Calls as a call centre records them: a question, a card number, a phone number.

Each generated call (``scripts``) has an agent (piper's joe) and a customer (the
voices of ``bench.redaction``, the held-out festival voice among them) on two
channels of an 8 kHz mu-law recording:

1. the agent greets and asks how to help;
2. the customer asks a BANKING77 question, from the dev split (``models.intent_train.banking77_split``);
3. the agent asks for the card number, and the customer reads it;
4. the agent asks for a phone number, and the customer reads it;
5. the customer thanks the agent.

The call is streamed through the embedded pipeline (int8, beam + LM, second
pass, intent and filters) once with the default redaction and once raw. Each
customer final goes to the turn its time span overlaps most. Figures:

* WER of the question turns and of all customer speech (raw run), against the
  text the voice was given, both normalised as finals are;
* digit error rate of the number turns: the edit distance between the digits
  a reader takes from the turn's text (``operators.redaction.spoken_digits``)
  and the number, per digit; and the share of numbers read back exactly;
* intent of the customer's first enriched event, as the product shows it (the
  bundled head, which has seen the dev questions typed), and of the question
  turn's text by a head fitted on the train split alone (``banking77_heldout_head``);
* calls whose card or phone number leaks (6+ digits in one event's text) in
  any partial, final or enriched event of the redacted run.

Whisper tiny.en (offline, greedy, the same mu-law audio) transcribes each
customer turn cut at the script's own boundaries, which the streaming
recogniser has to find itself. The audio of the rendered calls is cached
under ``runs/bench/calls/``: piper renders a little differently each time,
which moves the customer's turns by tens of milliseconds against the chunks,
and the question WER of 40 calls moved by 0.015 between two renders. Compare
figures on the same cached audio. Whisper's own figures move a little from run
to run even so: faster-whisper samples at a higher temperature when its greedy
text fails its checks.

    python -m bench.calls --calls 40
    callstream bench --only calls
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the callstream command does (stream/cli.py)

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soxr

from bench.common import ROOT, calls_main, table
from bench.peers import whisper_audio
from bench.redaction import CALL_RATE, render, stream_call
from models.intent_train import banking77_heldout_head, banking77_split, embed, load_banking77
from models.metrics import ErrorCounter, edit_distance
from models.redaction_eval import event_texts, leaks, number_exchange
from models.train.tts import SAMPLE_RATE
from operators.audio import mulaw_decode, mulaw_encode
from operators.intent import load_classifier
from operators.redaction import spoken_digits
from operators.spoken_form import normalize_text
from stream.app import build_pipeline
from stream.events import Enriched, Event, Final, StreamConfig

__all__ = ["CallScript", "Turn", "main", "run", "scripts", "turn_texts"]

AUDIO_DIR = ROOT / "runs" / "bench" / "calls"
_GREETINGS = (
    "thank you for calling how can i help you today",
    "good morning you are through to customer services how can i help",
    "hello my name is sam how may i help you",
)
_CLOSINGS = ("thank you", "thanks very much", "that's all thank you")


@dataclass(frozen=True)
class Turn:
    channel: str  # agent | customer
    text: str
    kind: str  # greeting | question | ask | card | phone | closing


@dataclass(frozen=True)
class CallScript:
    turns: tuple[Turn, ...]
    intent: str  # the question's BANKING77 category
    card: str
    phone: str


def scripts(n: int, seed: int = 0) -> list[CallScript]:
    """``n`` calls, each with a different BANKING77 dev question (see the module docstring).

    Call ``k`` depends on ``seed`` and ``k`` alone, so fewer calls are the first of more.
    """
    texts, labels = load_banking77()
    _, dev = banking77_split(labels)
    order = random.Random(seed).sample(sorted(int(i) for i in dev), len(dev))
    calls = []
    for k, i in enumerate(order[:n]):
        rng = random.Random(f"{seed}/{k}")
        card_ask, card_read, card = number_exchange(rng, "card")
        phone_ask, phone_read, phone = number_exchange(rng, "phone")
        turns = (
            Turn("agent", rng.choice(_GREETINGS), "greeting"),
            Turn("customer", texts[i], "question"),
            Turn("agent", card_ask, "ask"),
            Turn("customer", card_read, "card"),
            Turn("agent", phone_ask, "ask"),
            Turn("customer", phone_read, "phone"),
            Turn("customer", rng.choice(_CLOSINGS), "closing"),
        )
        calls.append(CallScript(turns, labels[i], card, phone))
    return calls


def turn_texts(finals: Sequence[Final], spans: Sequence[tuple[float, float]], turns: Sequence[Turn],
               channel: str = "customer") -> list[str]:
    """The text of ``channel``'s finals joined per turn: each final goes to the turn of that
    channel its time span overlaps most (the nearest one when it overlaps none)."""
    mine = [k for k, t in enumerate(turns) if t.channel == channel]
    out: list[list[str]] = [[] for _ in turns]
    for f in finals:
        if f.channel != channel or not f.text:
            continue

        def fit(k: int) -> tuple[float, float]:
            lo, hi = spans[k]
            overlap = min(hi, f.end) - max(lo, f.start)
            return overlap, -abs((lo + hi) / 2 - (f.start + f.end) / 2)

        out[max(mine, key=fit)].append(f.text)
    return [" ".join(parts) for parts in out]


def _digit_errors(text: str, number: str) -> int:
    said = "".join(spoken_digits(text))
    return edit_distance(list(number), list(said))


def _channel_audio(audio: np.ndarray, ch: int) -> np.ndarray:
    """One channel as the recogniser hears it (mu-law and back), at 16 kHz."""
    return soxr.resample(mulaw_decode(mulaw_encode(audio[:, ch])), CALL_RATE, SAMPLE_RATE).astype(np.float32)


def _render_cached(call: CallScript, index: int, seed: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    path = AUDIO_DIR / f"seed{seed}-{index:03d}.npz"
    if path.is_file():
        z = np.load(path)
        if [str(t) for t in z["texts"]] == [t.text for t in call.turns]:
            return z["audio"], [tuple(s) for s in z["spans"].tolist()]
    audio, spans = render([(t.channel, t.text) for t in call.turns], index)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, audio=audio, spans=np.array(spans), texts=np.array([t.text for t in call.turns]))
    return audio, spans


class _Tally:
    """One system's figures over the calls."""

    def __init__(self) -> None:
        self.question, self.customer = ErrorCounter(), ErrorCounter()
        self.digit_errors = self.digits = self.numbers = self.numbers_exact = 0
        self.intent_hyps: list[str] = []

    def add(self, call: CallScript, hyps: Sequence[str]) -> None:
        for turn, hyp in zip(call.turns, hyps):
            if turn.channel != "customer":
                continue
            ref, hyp = normalize_text(turn.text), normalize_text(hyp)
            self.customer.add(ref, hyp)
            if turn.kind == "question":
                self.question.add(ref, hyp)
                self.intent_hyps.append(hyp)
            elif turn.kind in ("card", "phone"):
                number = call.card if turn.kind == "card" else call.phone
                errors = _digit_errors(hyp, number)
                self.digit_errors += errors
                self.digits += len(number)
                self.numbers += 1
                self.numbers_exact += errors == 0


def run(calls: int = 20, seed: int = 0) -> tuple[str, dict]:
    """The tables and figures of ``calls`` generated calls (see the module docstring)."""
    pipeline = build_pipeline(enrich=True)
    peer = whisper_audio(1, 1)
    enc = load_classifier().encoder  # the variant the bundled head serves with
    heldout = banking77_heldout_head(enc)
    ours, whisper = _Tally(), _Tally()
    truth, first_intent, confirm = [], [], 0
    leaking = {"redacted": 0, "raw": 0}
    audio_s, t0 = 0.0, time.perf_counter()
    plan = scripts(calls, seed)
    for index, call in enumerate(plan):
        audio, spans = _render_cached(call, index, seed)
        audio_s += audio.shape[0] / CALL_RATE
        truth.append(call.intent)
        runs: dict[str, list[Event]] = {}
        for mode, redact in (("redacted", StreamConfig().redact), ("raw", ())):
            runs[mode] = stream_call(pipeline, audio, redact)
            leaking[mode] += any(leaks(t, secret) for ev in runs[mode] for t in event_texts(ev)
                                 for secret in (call.card, call.phone))
        first = next((ev.intent for ev in runs["redacted"]
                      if isinstance(ev, Enriched) and ev.transcript.channel == "customer" and ev.transcript.text), None)
        first_intent.append(first.label if first is not None else "")
        confirm += bool(first is not None and first.needs_confirmation)
        ours.add(call, turn_texts([ev for ev in runs["raw"] if isinstance(ev, Final)], spans, call.turns))
        customer = _channel_audio(audio, 1)
        whisper.add(call, [peer(customer[int(lo * SAMPLE_RATE) : int(hi * SAMPLE_RATE)]) if t.channel == "customer"
                           else "" for t, (lo, hi) in zip(call.turns, spans)])
    truth_a = np.array(truth)
    labels = np.array(heldout.labels)

    def heldout_accuracy(texts: Sequence[str]) -> float:
        return float(np.mean(labels[heldout.proba(embed(enc, list(texts), None)).argmax(1)] == truth_a))

    typed = [normalize_text(t.text) for c in plan for t in c.turns if t.kind == "question"]
    result: dict = {"calls": calls, "audio_minutes": round(audio_s / 60, 2),
                    "intent_typed_heldout": heldout_accuracy(typed),
                    "first_final_intent": float(np.mean(np.array(first_intent) == truth_a)),
                    "first_final_needs_confirmation": confirm / calls,
                    "calls_leaking": leaking["redacted"], "raw_calls_leaking": leaking["raw"]}
    rows = []
    for key, name, tally in (("ours", "callstream (streaming, two-pass)", ours),
                             ("whisper_tiny_en", "Whisper tiny.en (offline, greedy, turns cut for it)", whisper)):
        figures = {"question_wer": tally.question.wer, "customer_wer": tally.customer.wer,
                   "digit_error_rate": tally.digit_errors / max(tally.digits, 1),
                   "numbers_exact": tally.numbers_exact / max(tally.numbers, 1),
                   "intent_heldout": heldout_accuracy(tally.intent_hyps)}
        result[key] = figures
        rows.append([name, f"{figures['question_wer']:.3f}", f"{figures['customer_wer']:.3f}",
                     f"{figures['digit_error_rate']:.3f}", f"{tally.numbers_exact}/{tally.numbers}",
                     f"{figures['intent_heldout']:.2f}"])
    text = table(
        f"Generated calls: {calls} calls, {audio_s / 60:.1f} min of 8 kHz stereo mu-law, customer channel "
        f"({time.perf_counter() - t0:.0f} s). Question intent typed, held-out head: "
        f"{result['intent_typed_heldout']:.2f}. Customer's first enriched event: intent right "
        f"{result['first_final_intent']:.2f}, needs_confirmation {result['first_final_needs_confirmation']:.2f}. "
        f"Calls leaking a number: {leaking['redacted']} of {calls} (raw: {leaking['raw']})",
        ["system", "question WER", "customer WER", "digit error rate", "numbers exact",
         "question intent (held-out head)"],
        rows,
    )
    return text, result


def main(argv: list[str] | None = None) -> int:
    return calls_main(argv, "python -m bench.calls", __doc__, run, 40)


if __name__ == "__main__":
    raise SystemExit(main())
