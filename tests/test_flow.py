"""The whole Kafka flow against a real broker: audio topic -> ASR worker -> transcripts -> Faust agents -> enriched."""

import asyncio

import numpy as np
import pytest

from stream import codec
from stream.devbroker import running_agents
from stream.events import EndOfStream, Enriched, Final
from stream.kafka import AsrWorker
from tests.test_kafka import _config, _produce, _read, _utterance_records


@pytest.fixture(scope="module")
def pipeline(tiny_onnx):
    from stream.app import DecodingConfig, build_pipeline

    return build_pipeline(model=tiny_onnx["step"], decoding=DecodingConfig(lm=None, beam_width=4))


def test_audio_in_enriched_out(broker, pipeline, tmp_path):
    from operators.intent import default_encoder_dir

    if not (default_encoder_dir() / "encoder.onnx").exists():
        pytest.skip("the sentence encoder is not built (make setup builds it)")
    cfg = _config(broker)
    rng = np.random.default_rng(3)
    records = []
    for k in range(2):
        audio = (0.2 * rng.standard_normal((8000, 1))).astype(np.float32)
        records += _utterance_records("call-5", audio, k * 8000)
    records.append((b"call-5", b"", [("cs-end", b"1")]))

    async def body():
        worker = AsrWorker(pipeline, cfg)
        task = asyncio.create_task(worker.run())
        try:
            await _produce(cfg, records)
            transcripts = await _read(cfg, cfg.transcripts_topic,
                                      lambda rs: any(isinstance(codec.decode(r.value), EndOfStream) for r in rs))
            finals = [codec.decode(r.value) for r in transcripts]
            n = sum(isinstance(e, Final) for e in finals)
            enriched = await _read(cfg, cfg.enriched_topic, lambda rs: len(rs) >= n, timeout_s=90)
        finally:
            worker.stop()
            await task
        return transcripts, enriched

    with running_agents(broker.bootstrap, f"agents-{cfg.group_id}", cfg.transcripts_topic, cfg.enriched_topic,
                        cwd=tmp_path) as agents:
        transcripts, enriched = asyncio.run(body())
    log = agents.text
    finals = [e for e in (codec.decode(r.value) for r in transcripts) if isinstance(e, Final)]
    assert [f.utterance_index for f in finals] == list(range(len(finals))) and len(finals) >= 2
    events = [codec.decode(r.value) for r in enriched]
    assert all(isinstance(e, Enriched) and r.key == b"call-5" for e, r in zip(events, enriched)), log[-2000:]
    assert sorted(e.transcript.utterance_id for e in events) == sorted(f.utterance_id for f in finals)
    assert all(e.intent is not None and e.transcript.text == f.text
               for e, f in zip(sorted(events, key=lambda e: e.transcript.utterance_index), finals))
