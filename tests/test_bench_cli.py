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
