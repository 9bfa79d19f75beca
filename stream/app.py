"""Wiring: build the shared ``Pipeline`` from the bundled (or given) models."""

from __future__ import annotations

import argparse
import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from models.runtime import (ASSETS, SECOND_PASS_MODELS, SessionOptions, default_general_lm, default_second_pass_dir,
                            load_acoustic)
from operators.acoustic import AcousticOperator
from operators.ctc import BeamConfig, BeamDecoder, EndpointConfig, GreedyDecoder, LanguageModelConfig
from stream.errors import ModelError
from stream.pipeline import Pipeline

__all__ = ["DecodingConfig", "add_decoding_arguments", "build_pipeline", "decoding_from_args", "lm_config",
           "parse_hotwords"]

BUNDLED_LM = ASSETS / "lm"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingConfig:
    """How CTC output becomes text."""

    search: str = "beam"  # beam | greedy
    beam_width: int = 16
    nbest: int = 3
    lm: Path | None = BUNDLED_LM  # folder with lm.bin (or lm.arpa) and unigrams.txt; None: no LM
    # general-English LM mixed with ``lm`` (built at set-up); None: the domain LM alone
    general_lm: Path | None = field(default_factory=default_general_lm)
    alpha: float = 0.5  # LM weight
    beta: float = 1.0  # word insertion bonus
    hotwords: tuple[tuple[str, float], ...] = ()  # global hotwords (phrase, weight)
    vad_endpoint: bool = True  # also end utterances on the audio's energy (Pipeline.endpoint)
    second_pass: bool = True  # decode finals again with Whisper's decoder, when the model supports it
    second_pass_beam: int = 4  # the second pass's beam (models.second_pass.SecondPassConfig); 1: greedy
    second_pass_model: str = SECOND_PASS_MODELS[0]  # the Whisper model of the second pass
    # > 0: partials of an open utterance are decoded again by the second pass (greedy) each time
    # this many more seconds of it are in (Pipeline._refine_partials); 0: partials come from the
    # CTC search alone
    partial_second_pass_s: float = 0.0


def lm_config(cfg: DecodingConfig) -> LanguageModelConfig | None:
    if cfg.lm is None:
        return None
    folder = Path(cfg.lm)
    model = folder / "lm.bin" if (folder / "lm.bin").exists() else folder / "lm.arpa"
    if not model.exists():
        if folder == BUNDLED_LM:
            return None
        raise ModelError(f"no lm.bin or lm.arpa in {folder}")
    unigrams = folder / "unigrams.txt"
    mix = ()
    if cfg.general_lm is not None:
        general = Path(cfg.general_lm)
        if (general / "lm.bin").is_file() and (general / "unigrams.txt").is_file():
            mix = (LanguageModelConfig(path=general / "lm.bin", unigrams=general / "unigrams.txt",
                                       alpha=cfg.alpha, beta=cfg.beta),)
        elif general == default_general_lm():
            log.warning("the general-English LM is not built (run `callstream build-lm --general`); "
                        "decoding with the domain LM alone")
        else:
            raise ModelError(f"no lm.bin and unigrams.txt in {general}")
    return LanguageModelConfig(path=model, unigrams=unigrams if unigrams.exists() else None,
                               alpha=cfg.alpha, beta=cfg.beta, mix=mix)


def build_pipeline(
    *,
    model: Path | None = None,
    threads: int = 1,
    decoding: DecodingConfig | None = None,
    endpoint: EndpointConfig | None = None,
    enrich: bool = False,
) -> Pipeline:
    """The pipeline every transport serves. ``model``: an exported ONNX file (default: bundled int8).

    ``enrich`` applies intent and content filtering to finals in-process (the
    embedded mode); with Kafka the Faust agents do it instead.
    """
    decoding = decoding or DecodingConfig()
    acoustic = AcousticOperator(load_acoustic(model, SessionOptions(intra_op_threads=threads)))
    spec = acoustic.spec
    if decoding.search == "greedy":
        decoder = no_lm = GreedyDecoder(spec.vocab, spec.frame_seconds, endpoint)
    else:
        beam = BeamConfig(beam_width=decoding.beam_width, nbest=decoding.nbest)
        lm = lm_config(decoding)
        decoder = BeamDecoder(spec.vocab, spec.frame_seconds, endpoint, beam=beam, lm=lm, hotwords=decoding.hotwords)
        no_lm = decoder if lm is None else BeamDecoder(
            spec.vocab, spec.frame_seconds, endpoint, beam=beam, hotwords=decoding.hotwords)
    if decoding.partial_second_pass_s < 0:
        raise ValueError(f"expected partial_second_pass_s >= 0, got {decoding.partial_second_pass_s}")
    rescorer = partial_rescorer = None
    if decoding.second_pass and spec.second_pass == "whisper":
        from models.second_pass import SecondPass, SecondPassConfig

        config = SecondPassConfig(quantized=spec.quantized, beam=decoding.second_pass_beam)
        second_pass = SecondPass(default_second_pass_dir(decoding.second_pass_model), config,
                                 SessionOptions(intra_op_threads=threads))
        rescorer = second_pass.transcribe
        if decoding.partial_second_pass_s > 0:
            partial_rescorer = functools.partial(second_pass.transcribe, beam=1)
    enricher = None
    if enrich:
        from operators.enrich import default_enricher

        enricher = default_enricher()
    return Pipeline(
        acoustic=acoustic, ctc=decoder, ctc_no_lm=no_lm, endpoint=endpoint,
        enricher=(lambda state, final, mask: enricher.enrich(state, final, mask_profanity=mask)) if enricher else None,
        new_enrich_state=enricher.new_state if enricher else None, vad_endpoint=decoding.vad_endpoint,
        second_pass=rescorer, partial_second_pass=partial_rescorer,
        partial_interval_s=decoding.partial_second_pass_s, hotwords=decoding.hotwords,
    )


def add_decoding_arguments(p: argparse.ArgumentParser, *, second_pass_partials: float = 0.0) -> None:
    """``second_pass_partials``: the default of ``--second-pass-partials`` (0: off)."""
    d = DecodingConfig()
    p.add_argument("--greedy", action="store_true", help="greedy CTC instead of beam search")
    p.add_argument("--beam", type=int, default=d.beam_width, help="beam width")
    p.add_argument("--lm", type=Path, default=d.lm, help="LM folder (lm.bin, unigrams.txt); default: bundled")
    p.add_argument("--no-lm", action="store_true", help="beam search without a language model")
    p.add_argument("--general-lm", type=Path, default=d.general_lm,
                   help="general-English LM folder mixed with --lm (default: built at set-up)")
    p.add_argument("--no-general-lm", action="store_true", help="the domain LM alone")
    p.add_argument("--alpha", type=float, default=d.alpha)
    p.add_argument("--beta", type=float, default=d.beta)
    p.add_argument("--hotword", action="append", default=[], metavar="PHRASE[:WEIGHT]",
                   help="boost a word or phrase in the CTC search, and prompt the second pass with it (repeatable)")
    p.add_argument("--no-vad-endpoint", action="store_true",
                   help="end utterances on the model's blank frames alone, not also on the audio's energy")
    p.add_argument("--no-second-pass", action="store_true",
                   help="finals from the streaming CTC search alone, without Whisper's decoder")
    p.add_argument("--second-pass-beam", type=int, default=d.second_pass_beam, choices=range(1, 17), metavar="N",
                   help="beam of the second pass's decoder (1: greedy, about twice as fast)")
    p.add_argument("--second-pass-model", choices=SECOND_PASS_MODELS, default=d.second_pass_model,
                   help="the second pass's Whisper model (default: %(default)s; tiny.en takes about half the "
                        "time, less accurately; build it first: callstream build-asr --second-pass tiny.en)")
    p.add_argument("--second-pass-partials", type=_seconds_or_off, default=second_pass_partials, metavar="SECONDS",
                   help="also rewrite the partials of an utterance with the second pass (greedy) each time "
                        "SECONDS more of it are in: readable live captions of real speech, at about twice the "
                        "compute; serve pauses it while busy (default: %(default)s; 0: off)")


def _seconds_or_off(value: str) -> float:
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0 (0: off), got {value}")
    return seconds


def parse_hotwords(items: list[str]) -> tuple[tuple[str, float], ...]:
    """``--hotword PHRASE[:WEIGHT]`` values as (phrase, weight); weight 0: the decoder's default."""
    hotwords = []
    for item in items:
        phrase, _, weight = item.partition(":")
        hotwords.append((phrase, float(weight) if weight else 0.0))
    return tuple(hotwords)


def decoding_from_args(args: argparse.Namespace) -> DecodingConfig:
    return DecodingConfig(
        search="greedy" if args.greedy else "beam", beam_width=args.beam, lm=None if args.no_lm else args.lm,
        general_lm=None if args.no_general_lm else args.general_lm,
        alpha=args.alpha, beta=args.beta, hotwords=parse_hotwords(args.hotword), vad_endpoint=not args.no_vad_endpoint,
        second_pass=not args.no_second_pass, second_pass_beam=args.second_pass_beam,
        second_pass_model=args.second_pass_model, partial_second_pass_s=args.second_pass_partials,
    )
