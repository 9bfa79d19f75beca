"""Serving code never imports torch."""

import subprocess
import sys

import pytest

SERVING_MODULES = [
    "stream.display", "stream.captions", "stream.kafka_client", "stream.kafka_demo",
    "stream.codec", "stream.events", "stream.cli", "stream.pipeline", "stream.app", "stream.websocket",
    "stream.batcher", "stream.demo", "operators.audio", "operators.features", "operators.acoustic", "operators.ctc",
    "models.runtime", "models.evaluate", "models.lm", "models.second_pass", "operators.align",
    "operators.spoken_form", "stream.kafka", "stream.agents",
]


@pytest.mark.parametrize("module", SERVING_MODULES)
def test_serving_modules_do_not_import_torch(module):
    code = f"import sys, {module}; bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio')]; print(bad); sys.exit(bool(bad))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, f"{module} imported {proc.stdout.strip()} {proc.stderr[-500:]}"
