"""What the fuzz targets share: their names, where their seeds live, and the atheris entry point."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["CORPUS", "TARGETS", "fuzz"]

TARGETS = ("codec", "audio", "kafka", "audiofile")
CORPUS = Path(__file__).resolve().parent / "corpus"
_HERE = Path(__file__).resolve().parent


def fuzz(name: str, test_one_input: Callable[[bytes], None]) -> None:
    """Hand ``test_one_input`` to libFuzzer with this process's arguments (and the target's token
    dictionary ``tests/fuzz/<name>.dict``, where there is one); returns only by exiting."""
    import atheris

    argv = list(sys.argv)
    tokens = _HERE / f"{name}.dict"
    if tokens.exists() and not any(a.startswith("-dict=") for a in argv):
        argv.insert(1, f"-dict={tokens}")
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
