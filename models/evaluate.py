"""Streaming evaluation and file transcription (``callstream eval-asr`` / ``transcribe``). No torch.

Audio goes through the same ``Pipeline`` as the servers, in 100 ms chunks, so
the figures are those of the streaming path.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from models.metrics import ErrorCounter
from operators.redaction import check_modes
from operators.spoken_form import normalize_text
from stream import captions, codec
from stream.errors import AudioFileError, InputError
from stream.events import Final, StreamConfig
from stream.app import add_decoding_arguments, build_pipeline, decoding_from_args
from stream.pipeline import Pipeline

__all__ = ["slot_hits", "add_eval_arguments", "add_transcribe_arguments", "evaluate_manifest", "read_audio", "read_call",
           "run_eval", "run_transcribe", "transcribe_file"]

CHUNK_S = 0.1
FORMATS = ("txt", "vtt", "srt", "json")
_READ_BLOCK_FRAMES = 1 << 16


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Samples (frames, channels) as float32 and the rate of any file libsndfile reads.

    Raises ``AudioFileError`` naming the file and the reason (libsndfile alone says
    "System error" for a missing file).
    """
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if not path.is_file():
        raise AudioFileError(f"{path}: not a file")
    try:
        with sf.SoundFile(path) as f:
            # Block by block: memory follows the audio the file holds, not the frame count its
            # header claims, for which sf.read allocates at once (a FLAC header may claim 2**36).
            blocks = []
            while len(block := f.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)):
                blocks.append(block)
            x = np.concatenate(blocks) if blocks else np.zeros((0, f.channels), np.float32)
            sr = f.samplerate
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFileError(f"{path}: not audio that libsndfile can read (WAV, FLAC, OGG, ...): {e}") from e
    return x, int(sr)


def transcribe_file(pipeline: Pipeline, path: Path, stream_id: str = "file", *,
                    redact: Sequence[str] = ()) -> tuple[list[Final], float]:
    """All finals of a WAV/FLAC file (any rate; channels averaged), and the audio seconds.

    ``redact``: redaction modes (``StreamConfig.redact``); none by default, as measurements
    of the recogniser compare raw words.
    """
    x, sr = read_audio(path)
    mono = x.mean(axis=1)
    state = pipeline.create_stream(stream_id, StreamConfig(sample_rate=sr, encoding="f32", channels=1,
                                                           redact=tuple(redact)))
    step = max(1, int(sr * CHUNK_S))
    events = []
    for i in range(0, mono.size, step):
        pipeline.accept_waveform(state, mono[i : i + step], sr)
        events += pipeline.decode_streams([state])
    events += pipeline.finish(state)
    return [e for e in events if isinstance(e, Final)], mono.size / sr


def read_call(path: Path) -> tuple[np.ndarray, int, str]:
    """``read_audio``, and the encoding to send the call in: the file's own µ-law or A-law, else pcm16."""
    x, sr = read_audio(path)
    subtype = sf.info(path).subtype
    return x, sr, {"ULAW": "mulaw", "ALAW": "alaw"}.get(subtype, "pcm16")


def evaluate_manifest(pipeline: Pipeline, manifest: Path, hyps_out: Path | None = None) -> dict[str, float]:
    if not manifest.is_file():
        raise InputError(f"{manifest}: no such file")
    with open(manifest, newline="") as f:
        # Transcripts are taken verbatim (quotes included); slot annotations are CSV-quoted JSON.
        quoted = "slots_json" in f.readline()
        f.seek(0)
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE))
    if not rows or "path" not in rows[0]:
        raise InputError(f"{manifest}: expected a tab-separated manifest with a 'path' column and rows")
    missing = [row["path"] for row in rows if not (manifest.parent / row["path"]).is_file()]
    if missing:
        raise InputError(f"{manifest}: {len(missing)} of {len(rows)} audio files not found "
                         f"(paths are relative to the manifest's folder), e.g. {', '.join(missing[:3])}")
    scored = "text" in rows[0]
    slotted = "slots_json" in rows[0]
    slots_found = slots_total = 0
    counter = ErrorCounter()
    audio_s = compute_s = 0.0
    hyps = []
    for row in tqdm(rows, desc=f"eval {manifest.name}", unit="utt", dynamic_ncols=True):
        t0 = time.perf_counter()
        finals, seconds = transcribe_file(pipeline, manifest.parent / row["path"])
        compute_s += time.perf_counter() - t0
        audio_s += seconds
        hyp = " ".join(f.text for f in finals if f.text)
        hyps.append((row["path"], hyp))
        if scored:
            counter.add(" ".join(row["text"].lower().split()), hyp)
        if slotted:
            found, total = slot_hits(row["slots_json"], hyp)
            slots_found, slots_total = slots_found + found, slots_total + total
    if hyps_out:
        with open(hyps_out, "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
            w.writerow(["path", "hypothesis"])
            w.writerows(hyps)
    result = {"utterances": len(rows), "rtf": round(compute_s / max(audio_s, 1e-9), 4),
              "audio_seconds": round(audio_s, 2)}
    if scored:
        result.update(wer=round(counter.wer, 4), cer=round(counter.cer, 4))
    if slotted:
        result.update(slot_recall=round(slots_found / max(slots_total, 1), 4), slots=slots_total)
    return result


def slot_hits(slots_json: str, hypothesis: str) -> tuple[int, int]:
    """(slot values found word for word in ``hypothesis``, slot values) of one utterance.

    ``slots_json`` maps slot names to the values spoken ({"size": "twelve ounce"}); values
    and hypothesis are compared in spoken form (``normalize_text``), on word boundaries.
    """
    try:
        slots = json.loads(slots_json or "{}")
    except json.JSONDecodeError as e:
        raise InputError(f"slots_json is not JSON: {slots_json[:80]!r}") from e
    padded = f" {normalize_text(hypothesis)} "
    values = [normalize_text(str(v)) for v in slots.values()]
    values = [v for v in values if v]
    return sum(f" {v} " in padded for v in values), len(values)


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, required=True,
                   help="TSV with a header: 'path' (relative to the manifest), optional 'text' (scored by WER) "
                        "and 'slots_json' (scored by slot-value recall)")
    p.add_argument("--model", type=Path, help="ONNX acoustic model (default: the bundled int8 model)")
    p.add_argument("--hyps", type=Path, help="write path and hypothesis per utterance to this TSV")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    add_decoding_arguments(p)


def run_eval(args: argparse.Namespace) -> int:
    pipeline = build_pipeline(model=args.model, threads=args.threads, decoding=decoding_from_args(args))
    hyps = args.hyps or Path(f"{args.manifest.stem}.hyps.tsv")
    result = evaluate_manifest(pipeline, args.manifest, hyps)
    for k, v in result.items():
        print(f"{k:>14}: {v}")
    print(f"hypotheses written to {hyps}")
    if args.json:
        print(json.dumps(result))
    return 0


def add_transcribe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", type=Path, nargs="+", help="WAV or FLAC files, any sample rate")
    p.add_argument("--format", choices=FORMATS, default="txt",
                   help="txt: the transcript; vtt, srt: captions timed by the words; json: the finals, one per line")
    p.add_argument("--output-dir", type=Path,
                   help="write FILE's stem plus .txt/.vtt/.srt/.json here instead of printing (needed for "
                        "vtt and srt of several files)")
    p.add_argument("--model", type=Path)
    p.add_argument("--words", action="store_true", help="also print word timings and confidences")
    p.add_argument("--redact", default=",".join(StreamConfig().redact),
                   help="redaction modes, comma-separated: pci, ssn, phone, email, dob, numbers; "
                        "'none' for raw text (default: %(default)s)")
    add_decoding_arguments(p)


def _render(finals: list[Final], fmt: str) -> str:
    if fmt == "vtt":
        return captions.webvtt(captions.cues(finals))
    if fmt == "srt":
        return captions.srt(captions.cues(finals))
    return "".join(codec.encode(f).decode() + "\n" for f in finals)


def run_transcribe(args: argparse.Namespace) -> int:
    if args.format in ("vtt", "srt") and len(args.files) > 1 and args.output_dir is None:
        raise InputError(f"--format {args.format} of several files needs --output-dir: one caption file each")
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(model=args.model, decoding=decoding_from_args(args))
    try:
        redact = () if args.redact == "none" else check_modes([m.strip() for m in args.redact.split(",") if m.strip()])
    except ValueError as e:
        print(f"callstream transcribe: --redact: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.files:
        try:
            finals, seconds = transcribe_file(pipeline, path, stream_id=path.stem, redact=redact)
        except AudioFileError as e:
            print(f"callstream transcribe: {e}", file=sys.stderr)
            failed += 1
            continue
        text = " ".join(f.text for f in finals if f.text)
        if args.format == "txt":
            lines = [f"{path}\t{text}" if len(args.files) > 1 and args.output_dir is None else text]
            if args.words:
                lines += [f"  {w.start:7.2f} {w.end:7.2f} {w.confidence:5.2f} {w.text}" for f in finals for w in f.words]
            if not finals:
                lines.append(f"  (no speech recognised in {seconds:.1f} s of audio)")
            rendered = "".join(line + "\n" for line in lines)
        else:
            rendered = _render(finals, args.format)
        if args.output_dir is None:
            sys.stdout.write(rendered)
        else:
            out = args.output_dir / f"{path.stem}.{args.format}"
            out.write_text(rendered, encoding="utf-8")
            print(f"{path} -> {out}")
    return 1 if failed else 0
