"""`callstream bench` and `python -m bench` run the same suite, which the installed package carries."""

import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

from stream.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_carries_bench():
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in ("bench", "bench.kafka", "stream", "operators", "models.train"):
        assert any(fnmatch(package, pattern) for pattern in found["include"]), package


def test_callstream_bench_parses_the_suite_arguments():
    from bench import __main__ as suite

    args = build_parser("bench").parse_args(["bench", "--quick", "--json", "--only", "kafka", "--only", "streams"])
    assert args.func is suite.run
    assert args.quick and args.json and args.only == ["kafka", "streams"]
    assert args.out == Path("runs/bench/bench.json")


def test_python_m_bench_still_works():
    proc = subprocess.run([sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m bench")


def test_hotwords_parse_as_serve_takes_them():
    from stream.app import parse_hotwords

    assert parse_hotwords(["four:20", "acme bank", "visa:0"]) == (("four", 20.0), ("acme bank", 0.0), ("visa", 0.0))
    assert parse_hotwords([]) == ()
    args = build_parser("serve").parse_args(["serve", "--hotword", "four:20", "--hotword", "acme bank"])
    assert parse_hotwords(args.hotword) == (("four", 20.0), ("acme bank", 0.0))


def test_the_telephone_copy_is_8_khz_mulaw_of_the_same_speech(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    from bench import asr_dev

    monkeypatch.setattr(asr_dev, "TELEPHONE_DIR", tmp_path / "8k")
    t = np.arange(16000 * 2) / 16000
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    sf.write(tmp_path / "clip.flac", x, 16000)
    copy = asr_dev.telephone_copy(tmp_path / "clip.flac")
    info = sf.info(copy)
    assert (info.samplerate, info.subtype, info.frames) == (8000, "ULAW", 16000)
    y, _ = sf.read(copy, dtype="float32")
    spectrum = np.abs(np.fft.rfft(y))
    # 0.5 Hz bins: 440 Hz kept; 6 kHz, past the line's band, filtered out and not folded to 2 kHz
    assert spectrum[880] > 100 * spectrum[3990:4010].max()
    assert asr_dev.telephone_copy(tmp_path / "clip.flac") == copy  # cached
