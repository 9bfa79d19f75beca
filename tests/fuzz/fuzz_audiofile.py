"""Fuzz target: file bytes through ``models.evaluate.read_audio``, the reader of
``callstream transcribe`` and ``eval-asr`` (libsndfile: WAV, FLAC, OGG, AIFF, AU, ...).

It returns float32 frames of shape (N, channels) and a positive rate, or raises ``AudioFileError``.
"""

import atexit
import shutil
import tempfile
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["models.evaluate"]):
    from models.evaluate import read_audio
    from stream.errors import InputError

from tests.fuzz.harness import fuzz

_DIR = Path(tempfile.mkdtemp(prefix="fuzz-audiofile-"))
atexit.register(shutil.rmtree, _DIR, True)
FILE = _DIR / "input"


def TestOneInput(data: bytes) -> None:
    FILE.write_bytes(data)
    try:
        x, rate = read_audio(FILE)
    except InputError:
        return
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] < 1:
        raise AssertionError(f"expected float32 (N, channels), got {x.dtype} {x.shape}")
    if not isinstance(rate, int) or rate <= 0:
        raise AssertionError(f"expected a positive integer rate, got {rate!r}")


def main() -> None:
    fuzz("audiofile", TestOneInput)


if __name__ == "__main__":
    main()
