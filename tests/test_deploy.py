"""deploy/ cannot run here (no Docker engine): check that what it runs exists in the CLI."""

import re
from pathlib import Path

import pytest
import yaml

from stream.cli import COMMANDS, build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SOURCES = "\n".join(p.read_text() for d in ("stream", "operators", "models") for p in
                    (Path(__file__).resolve().parents[1] / d).rglob("*.py"))


def _invocations():
    for path in [DEPLOY / "compose.yaml", *sorted((DEPLOY / "k8s").glob("*.yaml"))]:
        for doc in yaml.safe_load_all(path.read_text()):
            yield from _walk(doc, path.name)
    text = (DEPLOY / "Dockerfile").read_text()
    cmd = re.search(r'^CMD (\[.*\])', text, re.M)
    yield "Dockerfile", yaml.safe_load(cmd.group(1)), []


def _walk(node, where):
    if isinstance(node, dict):
        args = node.get("command") or node.get("args")
        if isinstance(args, list) and args:  # only callstream services carry a command here
            env = node.get("environment") or {e["name"]: e for e in node.get("env", [])}
            yield where, args, list(env)
        for v in node.values():
            yield from _walk(v, where)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, where)


INVOCATIONS = list(_invocations())


def test_deploy_files_start_callstream_somewhere():
    assert {w for w, _, _ in INVOCATIONS} >= {"compose.yaml", "serve.yaml", "Dockerfile"}


@pytest.mark.parametrize("where,args,env", INVOCATIONS, ids=lambda v: v if isinstance(v, str) else None)
def test_every_deployed_command_parses_and_env_var_is_read(where, args, env):
    assert args[0] in COMMANDS, f"{where}: unknown subcommand {args[0]}"
    build_parser(args[0]).parse_args(args)
    for name in env:
        assert name in SOURCES, f"{where}: environment variable {name} is not read by callstream"
