"""The per-stream pipeline: decode -> split -> resample -> features -> acoustic -> CTC -> second pass -> enrich.

One ``Pipeline`` is the recogniser: it holds the shared, read-only parts
(model sessions, decoder tables, enrichment models) and serves any number of
streams, each with its own ``StreamState``. Every caller (the WebSocket
server, the Kafka worker, ``demo``, ``transcribe``, ``eval-asr``, the
benches) uses the same surface, after sherpa-onnx's ``OnlineRecognizer``:

* ``create_stream(stream_id, config)`` validates the config and opens a stream;
* ``accept_waveform(stream, samples, sample_rate)`` takes float audio, and
  ``accept_bytes(stream, payload)`` wire-format audio (the transports' step);
* ``is_ready(stream)`` says whether decoding has work to do;
* ``decode_streams(streams)`` runs the model over the ready chunks of all the
  streams in one batch, then the search, endpointing, second pass,
  redaction and enrichment, and returns their events;
* ``finalize(stream)`` ends the open utterance, ``finish(stream)`` the stream.

Nothing here does I/O or waits; transports run the calls off their event loop.
"""

from __future__ import annotations

import enum
import logging
import string
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from operators.acoustic import AcousticOperator, AcousticState
from operators.align import align_words
from operators.audio import AudioDecoder, AudioDecoderState, AudioFormat, Resampler, ResamplerState, dither
from operators.ctc import BeamDecoder, DecoderState, EndpointConfig, GreedyDecoder
from operators.features import FeatureState, LogMelOperator
from operators.itn import format_final
from operators.redaction import StreamRedactionState, StreamRedactor, check_modes, spoken_digits
from operators.spoken_form import normalize_text
from operators.vad import EnergyVad, VadConfig, VadState
from stream.errors import ConfigError
from stream.events import EndOfStream, Enriched, Event, Final, Partial, StreamConfig, Word

__all__ = ["MAX_CHANNEL_NAME_CHARS", "MAX_HOTWORDS", "MAX_HOTWORD_CHARS", "MAX_HOTWORD_WEIGHT", "ChannelState",
           "Checkpoint", "EnrichFn", "Pipeline", "StreamState", "channel_names"]

# Silence (the stream's dither, as its own quiet is) fed after the last audio of a stream. CTC
# emits a character a few frames after its sound, so a clip cut right after its last word lost it
# (FSDD dev WER, first pass, the head before v2.5: 0.305 without it, 0.220 with it). The second
# pass reads it too: 0.2 s of -70 dBFS noise instead gave the held-out voice's finals 0.2105 WER
# against 0.2067, and FSDD 0.205 against 0.220 (200 clips a set, same head).
_END_TAIL_S = 0.2
# Attention context kept while an utterance has no character yet. The model decodes worse after
# long quiet: FSDD dev after 1 s of -60 dBFS quiet made at 8 kHz, WER 0.488 -> 0.444 with this
# cap (0.478 at 0.64 s), without the lead-in 0.324 either way; Speech Commands, AN4 and the
# held-out voice unchanged; five long streams 0.399 -> 0.406 mean (two words of 430).
_QUIET_CONTEXT_S = 0.48


_log = logging.getLogger(__name__)

# (per-stream enrichment state, final) -> enriched event; the state is opaque here.
EnrichFn = Callable[[object, Final, bool], Enriched]
# Log-mel frames (T, mel) of utterances and a prompt for each (its stream's hotwords) -> their
# transcripts (models.second_pass.SecondPass.transcribe).
Rescorer = Callable[[list[np.ndarray], list[str]], list[str]]
# When the second pass replaces a final's text. Whisper makes words up on isolated words (Speech
# Commands dev: WER 0.66 with its text, 0.15 with the first pass's), so a final whose speech is
# one short word keeps the first pass. The test is the speech's span, not the first pass's word
# count: the CTC head can run a sentence's words together into one ("briaroscoffe", 3.8 s), and
# such finals need the second pass most. Far more letters than the first pass heard, or a word
# said over and over where the first pass heard no such run, are Whisper looping (a 16-digit
# card number: "one" 40 times). The opposite happens too: Whisper base heard the sample call's
# "four" and fifteen "one"s as nine digits, where the first pass kept fourteen. CTC emits each
# digit where it is spoken and does not merge repeats across the gaps between words, so when the
# first pass heard 4 or more digits and the second pass has fewer, the first pass's text stays: a
# card or phone number with digits missing is worse than a misspelt word. Digits are counted as a
# reader takes them from the text (``spoken_digits``: "forty one" is two), since Whisper writes
# numbers in its own way. On 80 card and phone numbers read in generated calls (``bench.calls``),
# the first pass alone got 79 digits wrong, the second pass alone 157; this rule 77, and the
# former one (the second pass trusted unless it dropped 2 or more digit words) 88.
_ISOLATED_WORD_S = 1.0
# Audio the second pass gets either side of a final's span. The span starts where the first
# pass's blank frames stopped, and CTC spikes a word's first character after its sound begins, so
# the span can cut the first word's onset.
# Two-pass finals, 200 utterances a set: held-out voice WER 0.207 without a margin, 0.200 with
# 0.3 s or 0.5 s; FSDD, Speech Commands, AN4 and barista_dev unchanged.
_SECOND_PASS_MARGIN_S = 0.3
_SECOND_PASS_MAX_RATIO, _SECOND_PASS_MAX_EXTRA = 2.0, 12
_SECOND_PASS_MAX_RUN = 3
_SECOND_PASS_MIN_DIGITS = 4
# A partial's refresh decodes its utterance from the start, so a refresh costs in proportion to
# the utterance so far. Refreshing every interval would make a 30 s utterance's cost grow with
# its square; waiting also for a quarter more audio than the last refresh covered bounds the cost
# per second of audio, whatever the utterance's length (30 s: 13 refreshes instead of 30).
_PARTIAL_GROWTH = 0.25
# Limits of a stream's own config (a WebSocket client's). Its hotwords build a scorer when the
# stream opens, on the server's event loop, and are matched at every frame: 30,000 of them (a
# 556 KB config message) took 4 s to open and made decoding 12 times slower; 100 of 100
# characters take 40 ms and no measurable decoding time. Weights far past the default (20) only
# garble the stream's text; 1.7e308 gave n-best scores of 1.7e308, a step from infinity, which
# the codec cannot encode.
MAX_HOTWORDS = 100
MAX_HOTWORD_CHARS = 100
MAX_HOTWORD_WEIGHT = 100.0
MAX_CHANNEL_NAME_CHARS = 64  # every event of the channel repeats its name


def channel_names(config: StreamConfig) -> tuple[str, ...]:
    """Names of a stream's channels: explicit, or mono / agent+customer / ch<N>."""
    if config.channel_names:
        if not all(1 <= len(name) <= MAX_CHANNEL_NAME_CHARS for name in config.channel_names):
            raise ConfigError(f"channel_names must be 1-{MAX_CHANNEL_NAME_CHARS} characters each")
        if len(config.channel_names) != config.channels:
            raise ConfigError(
                f"channel_names has {len(config.channel_names)} names for {config.channels} channel(s)"
            )
        if len(set(config.channel_names)) != config.channels:
            raise ConfigError("channel_names must be distinct")
        return config.channel_names
    if config.channels == 1:
        return ("mono",)
    if config.channels == 2:
        return ("agent", "customer")
    return tuple(f"ch{i}" for i in range(config.channels))


class Checkpoint(enum.Enum):
    """Where a channel's audio stops until the chunks before it are decoded (``Pipeline._front``)."""

    END = "end"  # the audio's energy vouches for the silence: the open utterance ends here
    PROBE = "probe"  # the energy cannot vouch: the model decides on a short chunk whether it ends


@dataclass
class ChannelState:
    stream: "StreamState"
    name: str
    resampler: ResamplerState
    features: FeatureState
    acoustic: AcousticState
    ctc: GreedyDecoder | BeamDecoder  # the CTC search (shared)
    search: DecoderState  # this channel's state of that search
    vad: VadState
    samples: int = 0  # model-rate samples received so far (their stream time times the rate)
    held: np.ndarray | None = None  # model-rate audio after a checkpoint, until _endpoint() runs
    checkpoint: Checkpoint | None = None  # None: no checkpoint is pending
    checkpoint_s: float = 0.0  # stream time of the pending checkpoint
    # CTC log-probs of the frames from ``log_probs_start`` on (second pass only): the open
    # utterance's, to time the words of its rescored final.
    log_probs: list[np.ndarray] = field(default_factory=list)
    log_probs_start: int = 0
    refined: "_Refined | None" = None  # the open utterance's last partial from the second pass
    refreshing: "_Refreshing | None" = None  # its refresh in flight on Pipeline.refresh_executor


@dataclass(frozen=True)
class _Refined:
    """What the second pass made of an open utterance's audio up to ``end`` (stream time).

    ``words`` None: its text was not trusted (``_trust_second_pass``), and the partials keep the
    first pass's; ``end`` still schedules the next try.
    """

    utterance_id: str
    end: float
    words: tuple[Word, ...] | None


@dataclass(frozen=True)
class _Refreshing:
    """A refresh of ``partial``'s utterance running on ``Pipeline.refresh_executor``: row ``row``
    of ``texts`` (None if the call failed) is its transcript once done."""

    partial: Partial
    texts: Future[list[str] | None]
    row: int


@dataclass
class StreamState:
    stream_id: str
    config: StreamConfig
    format: AudioFormat
    audio: AudioDecoder  # wire bytes of this stream's format to samples; stateless
    resampler: Resampler  # this stream's rate to the model's; stateless
    audio_state: AudioDecoderState
    channels: list[ChannelState] = field(default_factory=list)
    enrich_state: object | None = None
    redaction: StreamRedactionState | None = None  # None: the stream asked for raw text
    # The second pass's prompt: the hotword phrases (the server's, then the stream's), so that
    # finals spell them as the first pass's search is steered to; given only where the first pass
    # heard one of ``hotword_phrases`` (``_prompt_if_heard``).
    prompt: str = ""
    hotword_phrases: tuple[tuple[str, ...], ...] = ()
    closed: bool = False

    def channel(self, name: str) -> ChannelState:
        return next(c for c in self.channels if c.name == name)


class Pipeline:
    def __init__(
        self,
        *,
        acoustic: AcousticOperator,
        ctc: GreedyDecoder | BeamDecoder | None = None,
        ctc_no_lm: GreedyDecoder | BeamDecoder | None = None,
        endpoint: EndpointConfig | None = None,
        enricher: EnrichFn | None = None,
        new_enrich_state: Callable[[], object] | None = None,
        vad_endpoint: bool = True,
        second_pass: Rescorer | None = None,
        partial_second_pass: Rescorer | None = None,
        partial_interval_s: float = 1.0,
        hotwords: Sequence[tuple[str, float]] = (),
    ) -> None:
        """``hotwords``: the server's (phrase, weight) for every stream; ``ctc`` scores them, and
        the second pass reads their phrases as its prompt.

        ``partial_second_pass``: also rewrite the partials of an open utterance with this
        rescorer, on its audio so far, each time ``partial_interval_s`` more of it has been
        decoded (``_refine_partials``).
        """
        self.acoustic = acoustic
        self.hotwords = tuple(hotwords)
        spec = acoustic.spec
        if second_pass is not None and not spec.second_pass:
            raise ValueError("this acoustic model keeps no features for a second pass")
        self.second_pass = second_pass
        if partial_second_pass is not None and partial_interval_s <= 0:
            raise ValueError(f"expected a positive partial_interval_s, got {partial_interval_s}")
        self.partial_second_pass = partial_second_pass if second_pass is not None else None
        self.partial_interval_s = partial_interval_s
        # False pauses the partials' refreshes (partials already rewritten keep their words): the
        # WebSocket server sets it from its load, so that they run only while there is room.
        self.refine_partials = True
        # None: a refresh runs in the round that schedules it, so its partial reads it at once
        # (offline commands, benches, tests: the same words every run). The live transports give
        # it a thread of its own: a refresh then runs beside the first pass and the finals instead
        # of in front of them, and its words reach the channel's partials from the first round
        # after it is done. With it in the round, finals of a soak of 8 streams waited p99 0.81 s, not 0.28.
        self.refresh_executor: Executor | None = None
        self.on_refresh: Callable[[int, float], None] | None = None  # (utterances, seconds) per refresh call
        self.features = LogMelOperator(spec.features)
        # Ends utterances at 10 ms resolution when the audio's energy and the model agree (_endpoint()).
        self.vad = EnergyVad(VadConfig(sample_rate=self.features.config.sample_rate)) if vad_endpoint else None
        self.ctc = ctc or GreedyDecoder(spec.vocab, spec.frame_seconds, endpoint)
        # Streams that turn the language model off use this one.
        self.ctc_no_lm = ctc_no_lm or self.ctc
        self.enricher = enricher
        self.new_enrich_state = new_enrich_state
        self.redactor = StreamRedactor()
        # At each endpoint the model's left context is emptied, as at a stream's start. The model
        # learned every utterance from the start of its clip: after other speech it decodes
        # worse (45 dev utterances in one stream: WER 0.79 without the reset, 0.68 with it).
        # Empty, not filled with quiet noise: the bundled model makes up no characters on
        # silence from an empty context (12 clips, then 12 s of silence or noise from -90 to
        # -35 dBFS), and a context of 1.6 s of -70 dBFS noise costs it words: one 45-utterance
        # stream 0.298 with that context -> 0.255 WER empty, three more streams (0.6-2 s gaps,
        # -70 and -50 dBFS noise) 0.432 / 0.472 / 0.400 -> 0.392 / 0.375 / 0.400, one with
        # digitally silent gaps 0.560 -> 0.573.
        self.empty_context = self.acoustic.new_state()
        self.end_tail_samples = round(self.sample_rate * _END_TAIL_S)
        self._quiet_context_frames = round(_QUIET_CONTEXT_S / spec.frame_seconds)
        # Audio past the endpoint silence that the model needs for its frames up to there: encoder
        # frame k reads feature frames up to 4(k + 1) + context - 1, each a window long.
        cfg = self.features.config
        self._probe_lookahead_s = ((spec.context_frames - 1) * cfg.window_shift + cfg.window_size) / cfg.sample_rate

    @property
    def sample_rate(self) -> int:
        return self.features.config.sample_rate

    def create_stream(self, stream_id: str, config: StreamConfig, *, start_s: float = 0.0,
                      utterance_index: dict[str, int] | None = None) -> StreamState:
        """Validate ``config`` (raises ``InputError``) and create the stream's state.

        ``start_s`` is the stream time of the first audio and ``utterance_index``
        the next utterance number per channel, for a stream resumed mid-way.
        """
        fmt = AudioFormat(encoding=config.encoding, sample_rate=config.sample_rate, channels=config.channels)
        try:
            modes = check_modes(config.redact)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _check_hotwords(config.hotwords)
        endpoint = EndpointConfig(
            silence_after_speech_s=_positive(config.endpoint_silence_s, self.ctc.endpoint.silence_after_speech_s,
                                             "endpoint_silence_s"),
            silence_no_speech_s=_positive(config.endpoint_no_speech_s, self.ctc.endpoint.silence_no_speech_s,
                                          "endpoint_no_speech_s"),
            max_utterance_s=_positive(config.max_utterance_s, self.ctc.endpoint.max_utterance_s, "max_utterance_s"),
        )
        audio, resampler = AudioDecoder(fmt), Resampler(fmt.sample_rate, self.sample_rate)
        state = StreamState(stream_id=stream_id, config=config, format=fmt, audio=audio, resampler=resampler,
                            audio_state=audio.new_state(),
                            prompt=_prompt((*self.hotwords, *config.hotwords)),
                            hotword_phrases=_phrases((*self.hotwords, *config.hotwords)))
        ctc = self.ctc if config.language_model else self.ctc_no_lm
        first_frame = round(start_s / self.acoustic.spec.frame_seconds)
        for name in channel_names(config):
            search = ctc.new_state(stream_id, name, endpoint=endpoint, interim=config.interim_results,
                                    hotwords=config.hotwords)
            search.frame = search.utt_start = first_frame
            search.utterance_index = (utterance_index or {}).get(name, 0)
            state.channels.append(
                ChannelState(
                    stream=state, name=name, resampler=resampler.new_state(), features=self.features.new_state(),
                    acoustic=self.acoustic.new_state(), ctc=ctc, search=search,
                    vad=VadState(start_s=first_frame * self.acoustic.spec.frame_seconds),
                    samples=round(first_frame * self.acoustic.spec.frame_seconds * self.sample_rate),
                )
            )
        if self.new_enrich_state is not None:
            state.enrich_state = self.new_enrich_state()
        if modes:
            state.redaction = self.redactor.new_state(modes)
        return state

    def accept_bytes(self, state: StreamState, payload: bytes) -> None:
        """Wire-format audio of the stream's config (raises ``DecodeError`` on bad bytes)."""
        self._accept(state, state.audio.feed(state.audio_state, payload))

    def accept_waveform(self, state: StreamState, samples: np.ndarray, sample_rate: int) -> None:
        """Float audio in [-1, 1]: shape (T,) for one channel or (T, channels), at the stream's rate."""
        fmt = state.format
        if sample_rate != fmt.sample_rate:
            raise ValueError(f"expected audio at the stream's {fmt.sample_rate} Hz, got {sample_rate} Hz")
        x = np.asarray(samples, dtype=np.float32)
        frames = x.reshape(-1, 1) if x.ndim == 1 and fmt.channels == 1 else x
        if frames.ndim != 2 or frames.shape[1] != fmt.channels:
            raise ValueError(f"expected samples of shape (T, {fmt.channels}), got {x.shape}")
        if not np.isfinite(frames).all():
            raise ValueError("samples hold a NaN or infinity")
        state.audio_state.samples_decoded += frames.shape[0]
        self._accept(state, frames)

    def _accept(self, state: StreamState, frames: np.ndarray) -> None:
        """Split, resample and feature one block of frames (T, channels); queue it for the model.

        A channel may stop at a checkpoint (``_front``); ``decode_streams`` decodes the ready
        chunks, then passes it (``_endpoint``), which goes on with the rest.
        """
        if state.closed:
            raise ValueError(f"stream {state.stream_id} is closed")
        for i, ch in enumerate(state.channels):
            audio = self._dither(ch, state.resampler.feed(ch.resampler, np.ascontiguousarray(frames[:, i])))
            if ch.held is not None:
                ch.held = np.concatenate([ch.held, audio])
            else:
                self._front(ch, audio)

    @staticmethod
    def _dither(ch: ChannelState, audio: np.ndarray) -> np.ndarray:
        """``audio`` plus the dither at its positions in the channel (``operators.audio.dither``)."""
        out = dither(audio, ch.samples)
        ch.samples += out.size
        return out

    def _front(self, ch: ChannelState, audio: np.ndarray) -> None:
        """Features of model-rate audio into the acoustic queue, up to the channel's next checkpoint.

        With the energy endpoint on, the audio stops (the rest is held) where a chunk becomes
        ready, so the decoder is up to date before any later audio, and where the utterance
        ends: when the model's blank frames since its last character, followed by audio the
        model has not seen yet but whose energy is quiet, make the endpoint silence. Where the
        energy cannot vouch (background noise), the audio stops once it covers the endpoint
        silence and the model's frame look-ahead (a probe): ``endpoint`` then runs the model on
        the part of a chunk queued so far, and the decoder's own rule decides. Waiting for the
        whole chunk instead made such finals up to 320 ms late. Checkpoints sit at fixed
        points of the audio, so finals do not depend on how the audio was cut into messages.
        """
        if self.vad is None:
            self.acoustic.push(ch.acoustic, self.features.feed(ch.features, audio))
            return
        dec, fs, frame_s = ch.search, self.acoustic.spec.frame_seconds, self.vad.config.frame_s
        silence = dec.endpoint.silence_after_speech_s - 1e-6
        seen = dec.frame * fs  # stream time the decoder has seen up to
        last_speech = (dec.frame - dec.silence_run) * fs

        vouched = False

        def ends_here(end_s: float, quiet_frames: int) -> bool:
            nonlocal vouched
            if not dec.speech or end_s - last_speech < silence:
                return False
            ch.checkpoint_s = end_s
            vouched = quiet_frames * frame_s >= end_s - seen - 1e-6
            return vouched or end_s - last_speech >= silence + self._probe_lookahead_s

        while audio.size:
            piece = audio[: self._samples_to_chunk(ch)]
            cut = self.vad.feed(ch.vad, piece, ends_here)
            if cut is not None:
                piece = piece[:cut]
                ch.checkpoint = Checkpoint.END if vouched else Checkpoint.PROBE
            self.acoustic.push(ch.acoustic, self.features.feed(ch.features, piece))
            audio = audio[piece.size :]
            if ch.checkpoint or self.acoustic.ready(ch.acoustic):
                if audio.size:
                    ch.held = audio
                return

    def _samples_to_chunk(self, ch: ChannelState) -> int:
        """Model-rate samples that complete the channel's next acoustic chunk (at least 1)."""
        cfg = self.features.config
        frames = self.acoustic.frames_to_chunk(ch.acoustic)
        return max(1, (frames - 1) * cfg.window_shift + cfg.window_size - ch.features.pending.size)

    def is_ready(self, state: StreamState) -> bool:
        """Whether ``decode_streams`` has work for the stream: a whole chunk, or a checkpoint."""
        return bool(self._ready_channels(state)) or self._at_checkpoint(state)

    def decode_streams(self, states: Sequence[StreamState]) -> list[Event]:
        """Decode every ready chunk of ``states`` and pass their checkpoints; the events, in order per stream.

        Each round runs the model once over the ready chunks of all the streams (one batch),
        then the search of each chunk, then the second pass over the finals of all of them (one
        call); streams at a checkpoint then pass it, which may make more chunks ready.
        """
        events: list[Event] = []
        while True:
            ready = [ch for state in states for ch in self._ready_channels(state)]
            if ready:
                decoded = zip(ready, self.acoustic.feed_batch([c.acoustic for c in ready]))
                events.extend(self._enrich([(ch.stream, self._decode(ch, lp)) for ch, lp in decoded]))
                continue
            waiting = [state for state in states if self._at_checkpoint(state)]
            if not waiting:
                return events
            events.extend(self._enrich([(state, self._endpoint(state)) for state in waiting]))

    def _ready_channels(self, state: StreamState) -> list[ChannelState]:
        return [ch for ch in state.channels if self.acoustic.ready(ch.acoustic)]

    def _decode(self, channel: ChannelState, log_probs: np.ndarray) -> list[Event]:
        """CTC decoding of one chunk's log-probs (n, vocab); the caller enriches the events.

        When an utterance ends (or a silence restarts one), the model's left context is reset;
        until the next one has a character, the context is kept short (``_QUIET_CONTEXT_S``).
        """
        start = channel.search.utt_start
        if self.second_pass is not None:
            if not channel.log_probs:
                channel.log_probs_start = channel.search.frame
            channel.log_probs.append(log_probs)
        events = channel.ctc.feed(channel.search, log_probs)
        if channel.search.utt_start != start:
            self.acoustic.reset_context(channel.acoustic, self.empty_context)
        if not channel.search.speech:
            self.acoustic.limit_context(channel.acoustic, self._quiet_context_frames)
        return events

    def _at_checkpoint(self, state: StreamState) -> bool:
        """Whether a channel waits at a checkpoint: decode the ready chunks, then call ``_endpoint``."""
        return any(ch.held is not None or ch.checkpoint for ch in state.channels)

    def _endpoint(self, state: StreamState) -> list[Event]:
        """Pass each channel's checkpoint (see ``_front``), once the chunks before it are decoded.

        Returns the finals of the utterances that end there, not yet enriched. After an energy
        checkpoint the audio is quiet, so it holds none of their words; it starts the next
        utterance. At a probe, the model's frames of the queued part of a chunk go to the decoder
        now, whose rule ends the utterance if they are blank (``_decode``); if speech goes on, so
        does it.
        """
        events: list[Event] = []
        for ch in state.channels:
            checkpoint, ch.checkpoint = ch.checkpoint, None
            if checkpoint is Checkpoint.END:
                # The rule's silence is met here, past the decoded frames: the final ends here.
                events.extend(ch.ctc.flush(ch.search, reason="silence", end_s=ch.checkpoint_s))
                self.acoustic.reset_context(ch.acoustic, self.empty_context)
            elif checkpoint is Checkpoint.PROBE:
                log_probs = self.acoustic.run_partial(ch.acoustic)
                if log_probs is not None:
                    events.extend(self._decode(ch, log_probs))
            held, ch.held = ch.held, None
            if held is not None:
                self._front(ch, held)
        return events

    def finalize(self, state: StreamState) -> list[Event]:
        """End the open utterance of every channel now and keep the stream open.

        Audio still short of a whole chunk stays queued for the next utterance.
        """
        return self._enrich([(state, ch.ctc.flush(ch.search, reason="flush")) for ch in state.channels])

    def finish(self, state: StreamState, reason: str = "end") -> list[Event]:
        """End of stream: flush every stage, emit the last finals and ``EndOfStream``."""
        if state.closed:
            return []
        events = self.decode_streams([state])
        for ch in state.channels:
            silence = np.zeros(self.end_tail_samples, np.float32)
            tail = self._dither(ch, np.concatenate([state.resampler.flush(ch.resampler), silence]))
            self.acoustic.push(ch.acoustic, self.features.feed(ch.features, tail))
            last = [e for lp in self.acoustic.flush(ch.acoustic) for e in self._decode(ch, lp)]
            events.extend(self._enrich([(state, last + ch.ctc.flush(ch.search))]))
        state.closed = True
        seconds = state.audio_state.samples_decoded / state.format.sample_rate
        events.append(EndOfStream(stream_id=state.stream_id, reason=reason, audio_seconds=round(seconds, 3)))
        return events

    def _rescore(self, groups: Sequence[tuple[StreamState, Sequence[Event]]]) -> list[list[Event]]:
        """Finals rewritten by the second pass, their words timed on the CTC log-probs; per group.

        The finals of every group go to the second pass in one call, so that finals of many
        streams share its batches. The first pass's text stays where the second is not to be
        trusted (``_SECOND_PASS_*``). Kept features and log-probs before the open utterance are
        dropped.
        """
        if self.second_pass is None:
            return [list(events) for _, events in groups]
        shift = self.features.config.frame_shift_ms / 1000.0
        margin = round(_SECOND_PASS_MARGIN_S / shift)
        jobs: list[tuple[StreamState, ChannelState, Final, np.ndarray]] = []
        for state, events in groups:
            for f in events:
                if isinstance(f, Final) and _worth_a_second_pass(f):
                    ch = state.channel(f.channel)
                    mel = self.acoustic.kept_features(ch.acoustic, round(f.start / shift) - margin,
                                                      round(f.end / shift) + margin)
                    if mel.shape[0]:
                        jobs.append((state, ch, f, mel))
        prompts = [_prompt_if_heard(state, (f.text, *(h.text for h in f.nbest))) for state, _, f, _ in jobs]
        texts = self.second_pass([mel for *_, mel in jobs], prompts) if jobs else []
        rescored: dict[int, Event] = {}
        for (_, ch, f, _), text in zip(jobs, texts):
            text = normalize_text(text)
            if _trust_second_pass(f.text.split(), text.split()):
                rescored[id(f)] = replace(f, text=text, words=self._timed_words(ch, f, text))
        if self.partial_second_pass is not None:
            rescored.update(self._refine_partials(groups))
        fs = self.acoustic.spec.frame_seconds
        for state in {id(state): state for state, _ in groups}.values():
            for ch in state.channels:
                keep_from = ch.search.utt_start
                self.acoustic.drop_features(ch.acoustic, round(keep_from * fs / shift))
                drop = keep_from - ch.log_probs_start
                if drop > 0 and ch.log_probs:
                    rest = np.concatenate(ch.log_probs)[drop:]
                    ch.log_probs = [rest] if rest.size else []
                    ch.log_probs_start = keep_from
        return [[rescored.get(id(ev), ev) for ev in events] for _, events in groups]

    def _refine_partials(self, groups: Sequence[tuple[StreamState, Sequence[Event]]]) -> dict[int, Partial]:
        """Partials rewritten by the second pass (greedy), keyed by ``id`` of the event they replace.

        The first pass's text of a sentence from real speech is often unreadable (barista_dev: the
        last partial before each final finds 15% of the slot values, the final 90%), and a live
        caption shows it until the final. So each channel's open utterance is decoded again from
        its start once ``partial_interval_s`` more of it is in, and a quarter more than the last
        refresh covered (``_PARTIAL_GROWTH``); the channels of every group share one call, on
        ``refresh_executor`` when there is one (one refresh in flight per channel). Its partials
        then read the second pass's words, followed by the first pass's words that start after the
        audio it heard. Those can still change, at the next refresh or in the final, so such
        partials have no stable words. ``refine_partials`` False pauses the refreshes.
        """
        states = {id(state): state for state, _ in groups}.values()
        for ch in (ch for state in states for ch in state.channels):
            if ch.refreshing is not None and ch.refreshing.texts.done():
                r, ch.refreshing = ch.refreshing, None
                texts = r.texts.result()
                ch.refined = self._refined(ch, r.partial, None if texts is None else texts[r.row])
        # utterance id -> its latest refresh; a partial before its utterance's final in the same
        # group still reads the refresh
        known = {ch.refined.utterance_id: ch.refined for state in states for ch in state.channels if ch.refined}
        shift = self.features.config.frame_shift_ms / 1000.0
        margin = round(_SECOND_PASS_MARGIN_S / shift)
        jobs: list[tuple[StreamState, ChannelState, Partial, np.ndarray]] = []
        for state, events in groups:
            last: dict[str, Partial] = {}
            for ev in events:
                if isinstance(ev, Partial):
                    last[ev.channel] = ev
                elif isinstance(ev, Final):
                    last.pop(ev.channel, None)
                    ch = state.channel(ev.channel)
                    ch.refined = ch.refreshing = None  # a refresh still running is for an ended utterance
            for p in last.values():
                ch = state.channel(p.channel)
                done = ch.refined.end if ch.refined and ch.refined.utterance_id == p.utterance_id else p.start
                grown = p.end - done >= max(self.partial_interval_s, _PARTIAL_GROWTH * (done - p.start))
                if self.refine_partials and p.words and grown and ch.refreshing is None:
                    mel = self.acoustic.kept_features(ch.acoustic, round(p.start / shift) - margin,
                                                      round(p.end / shift))
                    if mel.shape[0]:
                        jobs.append((state, ch, p, mel))
        prompts = [_prompt_if_heard(state, (p.text,)) for state, _, p, _ in jobs]
        if jobs and self.refresh_executor is None:
            texts = self._run_refresh([mel for *_, mel in jobs], prompts)
            for (_, ch, p, _), text in zip(jobs, texts):
                ch.refined = known[p.utterance_id] = self._refined(ch, p, text)
        elif jobs:
            # copies: the thread reads them while this one goes on with the stream
            future = self.refresh_executor.submit(self._refresh, [mel.copy() for *_, mel in jobs], prompts)
            for row, (_, ch, p, _) in enumerate(jobs):
                ch.refreshing = _Refreshing(p, future, row)
        out: dict[int, Partial] = {}
        for _, events in groups:
            for ev in events:
                r = known.get(ev.utterance_id) if isinstance(ev, Partial) else None
                if r is not None and r.words is not None:
                    words = (*r.words, *(w for w in ev.words if w.start >= r.end))
                    out[id(ev)] = replace(ev, text=" ".join(w.text for w in words), words=words, stable=0)
        return out

    def refresh_in_thread(self) -> ThreadPoolExecutor | None:
        """Give the partials' refreshes a thread of their own, as the live transports do; None when
        this recogniser does not refresh partials. The caller shuts the thread down.

        Its onnxruntime calls release the GIL, so it takes the second core while the first pass
        runs on the recogniser's thread."""
        if self.partial_second_pass is None:
            return None
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstream-refresh")
        self.refresh_executor = executor
        return executor

    def _run_refresh(self, mels: list[np.ndarray], prompts: list[str]) -> list[str]:
        t0 = time.perf_counter()
        texts = self.partial_second_pass(mels, prompts)
        if self.on_refresh is not None:
            self.on_refresh(len(mels), time.perf_counter() - t0)
        return texts

    def _refresh(self, mels: list[np.ndarray], prompts: list[str]) -> list[str] | None:
        """The partials' second pass on ``refresh_executor``; None if it failed, and the partials
        keep the first pass's words (a caption's refresh is not worth a stream)."""
        try:
            return self._run_refresh(mels, prompts)
        except Exception:
            _log.exception("a refresh of %d partials failed; they keep the first pass's words", len(mels))
            return None

    def _refined(self, ch: ChannelState, p: Partial, text: str | None) -> _Refined:
        """The refresh of ``p``'s utterance up to its end, from the second pass's ``text``."""
        text = normalize_text(text) if text is not None else None
        trusted = text is not None and _trust_second_pass(p.text.split(), text.split())
        return _Refined(p.utterance_id, p.end, self._timed_words(ch, p, text) if trusted else None)

    def _timed_words(self, ch: ChannelState, event: Final | Partial, text: str) -> tuple[Word, ...]:
        """Words of ``text`` timed by forced alignment on the utterance's CTC log-probs.

        Where the text cannot be aligned (too many characters for the frames), the words share
        the utterance's span evenly, with the first pass's mean confidence.
        """
        fs = self.acoustic.spec.frame_seconds
        first = round(event.start / fs)
        lp = np.concatenate(ch.log_probs) if ch.log_probs else np.zeros((0, len(self.acoustic.spec.vocab)))
        lp = lp[max(0, first - ch.log_probs_start) : max(0, round(event.end / fs) - ch.log_probs_start)]
        spans = align_words(lp, text, self.acoustic.spec.vocab)
        words = text.split()
        if spans is None:
            step = (event.end - event.start) / len(words)
            conf = float(np.mean([w.confidence for w in event.words])) if event.words else 0.0
            return tuple(Word(w, round(event.start + i * step, 3), round(event.start + (i + 1) * step, 3),
                              round(conf, 4)) for i, w in enumerate(words))
        return tuple(Word(w, round((first + a) * fs, 3), round((first + b) * fs, 3), round(c, 4))
                     for w, (a, b, c) in zip(words, spans))

    def _enrich(self, groups: Sequence[tuple[StreamState, Sequence[Event]]]) -> list[Event]:
        """Events of (stream, events) groups, in order: the second pass on the finals of all of
        them (one call), then per event the numbers formatted when the stream asked, redaction,
        and the enriched event.

        Redaction comes before any event leaves: a caption never shows a card number, not even
        in a partial that the next one corrects. It reads formatted numbers too, and runs after
        the formatter so that its spans index the words that go out.
        """
        out: list[Event] = []
        for (state, _), events in zip(groups, self._rescore(groups)):
            out.extend(self._enrich_events(state, events))
        return out

    def _enrich_events(self, state: StreamState, events: Sequence[Event]) -> list[Event]:
        out: list[Event] = []
        for ev in events:
            if isinstance(ev, Final) and state.config.number_formatting:
                ev = format_final(ev)
            if state.redaction is not None and isinstance(ev, Partial):
                ev = self.redactor.partial(state.redaction, ev)
            elif state.redaction is not None and isinstance(ev, Final):
                ev = self.redactor.final(state.redaction, ev)
            out.append(ev)
            if isinstance(ev, Final) and self.enricher is not None:
                out.append(self.enricher(state.enrich_state, ev, state.config.mask_profanity))
        return out


def _prompt(hotwords: Sequence[tuple[str, float]]) -> str:
    """The second pass's prompt: the hotword phrases, those typed all in lower case capitalised.

    Whisper's prompt is text it reads as what was said before, and it takes names from it as they
    are written there: on the sample call, the prompt "Acme Bank" made base write the agent's
    "acme bank", and "acme bank" did not ("acne thank").
    """
    phrases = [" ".join(p.split()) for p, _ in hotwords]
    return ", ".join(p if p != p.lower() else string.capwords(p) for p in phrases if p)


def _phrases(hotwords: Sequence[tuple[str, float]]) -> tuple[tuple[str, ...], ...]:
    """The hotword phrases as the first pass writes words (spoken form, lower case)."""
    return tuple(words for words in (tuple(normalize_text(p).split()) for p, _ in hotwords) if words)


def _prompt_if_heard(state: StreamState, texts: Sequence[str]) -> str:
    """``state.prompt`` where one of the first pass's ``texts`` has a hotword phrase, else none.

    A prompt costs the utterances that do not name a hotword: with four hotwords that coffee
    orders never say, barista_dev slot recall fell from 0.900 to 0.874, and on the sample call
    the prompt "Acme Bank" made Whisper drop the customer's "hi" and "great". The first pass's
    search is steered to the hotwords, so it finds them where they are said.
    """
    padded = [f" {' '.join(text.split())} " for text in texts]
    heard = any(f" {' '.join(phrase)} " in text for phrase in state.hotword_phrases for text in padded)
    return state.prompt if heard else ""


def _worth_a_second_pass(final: Final) -> bool:
    """More than one word, or one (run-together) word spoken for longer than a word takes."""
    if len(final.words) >= 2:
        return True
    return bool(final.words) and final.words[-1].end - final.words[0].start >= _ISOLATED_WORD_S


def _trust_second_pass(first: list[str], second: list[str]) -> bool:
    """Whether the second pass's words may replace the first pass's (the rules above)."""
    if not second or _letters(second) > _SECOND_PASS_MAX_RATIO * _letters(first) + _SECOND_PASS_MAX_EXTRA:
        return False
    if _longest_run(second) >= _SECOND_PASS_MAX_RUN and _longest_run(second) > _longest_run(first) + 1:
        return False
    heard = _digits(first)
    return not (heard >= _SECOND_PASS_MIN_DIGITS and _digits(second) < heard)


def _letters(words: list[str]) -> int:
    return sum(len(w) for w in words)


def _digits(words: list[str]) -> int:
    return sum(len(run) for run in spoken_digits(" ".join(words)))


def _longest_run(words: list[str]) -> int:
    """The most times one word is said in a row."""
    best = run = 0
    for i, w in enumerate(words):
        run = run + 1 if i and w == words[i - 1] else 1
        best = max(best, run)
    return best


def _check_hotwords(hotwords: Sequence[tuple[str, float]]) -> None:
    if len(hotwords) > MAX_HOTWORDS:
        raise ConfigError(f"at most {MAX_HOTWORDS} hotwords per stream, got {len(hotwords)}")
    for phrase, weight in hotwords:
        if len(phrase) > MAX_HOTWORD_CHARS:
            raise ConfigError(f"hotwords are at most {MAX_HOTWORD_CHARS} characters, got {len(phrase)}")
        if weight > MAX_HOTWORD_WEIGHT:
            raise ConfigError(f"hotword weights are at most {MAX_HOTWORD_WEIGHT:g}, got {weight:g}")


def _positive(value: float | None, default: float, name: str) -> float:
    if value is None:
        return default
    if not value > 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
    return float(value)
