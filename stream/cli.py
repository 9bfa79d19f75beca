"""The ``callstream`` console script. Each subcommand maps flags onto config dataclasses."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]


def _cmd_schema(args: argparse.Namespace) -> int:
    from stream.codec import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _add_schema(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of every message (server and client)")
    p.add_argument("--out", help="write to this file instead of stdout")
    p.set_defaults(func=_cmd_schema)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_schema]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callstream", description="Real-time streaming speech and text processing.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
