"""``callstream schema``: write the JSON Schema of every message."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream.codec import json_schema

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0
