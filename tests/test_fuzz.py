"""Each fuzz target (tests/fuzz) for a fixed number of inputs: its seeds, which hold every input that
once crashed it, then mutations. Long runs: ``python -m bench.fuzz --minutes M``."""

import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.harness import CORPUS, TARGETS

ROOT = Path(__file__).resolve().parents[1]
# Inputs per target, 2-4 s each on one core: inputs/s run from ~60k (codec) to ~200 (the Kafka
# worker runs the model on whole records; the audio front end resamples up to 8 channels).
RUNS = {"codec": 20000, "audio": 600, "kafka": 500, "audiofile": 1500}


def _rss_limit_mb() -> int:
    """2 GB above this process's peak: Linux hands a child the peak RSS of the process that
    forked it, and libFuzzer's limit reads that peak, so a fixed 2 GB failed after heavy tests."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 2048


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_meets_its_contract(target, tmp_path):
    pytest.importorskip("atheris", reason="atheris is in the [dev] extra")
    (tmp_path / "new").mkdir()
    cmd = [sys.executable, "-m", f"tests.fuzz.fuzz_{target}", f"-runs={RUNS[target]}", "-seed=1",
           "-timeout=20", f"-rss_limit_mb={_rss_limit_mb()}", f"-artifact_prefix={tmp_path}/", str(tmp_path / "new"),
           str(CORPUS / target)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"
    done = re.search(r"Done (\d+) runs", proc.stderr)
    assert done and int(done.group(1)) == RUNS[target], proc.stderr[-2000:]
