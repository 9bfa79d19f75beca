"""Partials rewritten by the second pass while an utterance is open (``--second-pass-partials``)."""

import argparse
import asyncio
import logging
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from operators.audio import encode_audio
from stream.app import DecodingConfig, add_decoding_arguments, build_pipeline, decoding_from_args
from stream.batcher import MicroBatcher
from stream.events import Final, Partial, StreamConfig
from stream.kafka import AsrWorker, KafkaConfig
from tests.recognizer import feed

SAMPLE = Path(__file__).resolve().parents[1] / "models" / "assets" / "sample_call.wav"


def channel(index: int, start_s: float, end_s: float) -> np.ndarray:
    """Part of one of the sample call's channels, at 16 kHz."""
    x, sr = sf.read(SAMPLE, dtype="float32", always_2d=True)
    return soxr.resample(x[int(start_s * sr) : int(end_s * sr), index], sr, 16000).astype(np.float32)


def open_stream(pipeline):
    return pipeline.create_stream("s", StreamConfig(sample_rate=16000, encoding="f32", redact=()))


def stream(pipeline, audio: np.ndarray, state=None) -> list:
    state = state or open_stream(pipeline)
    events = []
    for i in range(0, audio.size, 320):
        events += feed(pipeline, state, encode_audio(audio[i : i + 320], "f32"))
    return events + pipeline.finish(state)


def test_partials_read_the_second_pass_and_the_words_heard_after_it():
    """Each refresh decodes the open utterance from its start, once a second more of it is in;
    its partials read those words, then the first pass's words after the audio they cover, with
    no stable words. A new utterance starts again from its own start."""
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)
    calls: list[list[int]] = []

    def rescorer(mels: list[np.ndarray], prompts: list[str]) -> list[str]:
        calls.append([m.shape[0] for m in mels])
        return ["Refined, words."] * len(mels)

    pipeline.partial_second_pass = rescorer
    counted: list[int] = []
    pipeline.on_refresh = lambda utterances, seconds: counted.append(utterances)
    agent = channel(0, 0.0, 4.8)
    events = stream(pipeline, np.concatenate([agent, np.zeros(24000, np.float32), agent]))
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 2
    for f in finals:
        partials = [e for e in events if isinstance(e, Partial) and e.utterance_id == f.utterance_id]
        refined = [p for p in partials if p.text.startswith("refined words")]
        assert refined and all(p.stable == 0 for p in refined)
        assert all(p.end - p.start >= 1.0 for p in refined)  # none before a second of it was in
        assert all(f.start <= w.start for p in refined for w in p.words)  # this utterance's words
        # the first pass's words of the audio after a refresh follow its words
        assert any(len(p.words) > 2 for p in refined)
        assert all(p.words[2].start >= p.words[1].end for p in refined if len(p.words) > 2)
        assert all([w.text for w in p.words] == p.text.split() for p in refined)
    lengths = [n for call in calls for n in call]
    assert len(lengths) >= 4
    assert counted == [len(call) for call in calls]  # what serve's metrics count
    first = lengths[: len(lengths) // 2]
    assert all(b - a >= 100 for a, b in zip(first, first[1:]))  # 10 ms frames: a second or more between
    assert lengths[len(lengths) // 2] < lengths[len(lengths) // 2 - 1]  # the second utterance from its start


def test_the_last_partial_reads_as_the_final_does():
    """The first pass spells the sample call's customer "... in need to blockit" until the final;
    with the second pass on its partials, the last partial before the final already reads right."""
    customer = channel(1, 4.8, 9.4)
    texts = {}
    for name, decoding in (("plain", DecodingConfig()), ("refined", DecodingConfig(partial_second_pass_s=1.0))):
        events = stream(build_pipeline(decoding=decoding, enrich=False), customer)
        final = next(e for e in events if isinstance(e, Final))
        assert final.text.endswith("i lost my card yesterday and i need to block it")
        last = [e for e in events if isinstance(e, Partial) and e.utterance_id == final.utterance_id][-1]
        texts[name] = (last.text, final.text)
    assert texts["plain"][0] != texts["plain"][1]
    assert texts["refined"][0] == texts["refined"][1]


def test_the_interval_is_checked():
    p = argparse.ArgumentParser()
    add_decoding_arguments(p)
    for bad in ("-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit):
            p.parse_args(["--second-pass-partials", bad])
    assert decoding_from_args(p.parse_args([])).partial_second_pass_s == 0.0
    assert decoding_from_args(p.parse_args(["--second-pass-partials", "0.5"])).partial_second_pass_s == 0.5
    serve = argparse.ArgumentParser()
    add_decoding_arguments(serve, second_pass_partials=1.0)
    assert decoding_from_args(serve.parse_args([])).partial_second_pass_s == 1.0
    assert decoding_from_args(serve.parse_args(["--second-pass-partials", "0"])).partial_second_pass_s == 0.0
    with pytest.raises(ValueError, match="partial_second_pass_s"):
        build_pipeline(decoding=DecodingConfig(partial_second_pass_s=-1.0))


def test_paused_refreshes_leave_the_partials_to_the_first_pass():
    """The WebSocket server pauses the refreshes while its recogniser has no room (stream.load)."""
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)
    calls = []
    pipeline.partial_second_pass = lambda mels, prompts: calls.append(len(mels)) or ["refined"] * len(mels)
    pipeline.refine_partials = False
    events = stream(pipeline, channel(0, 0.0, 4.8))
    assert calls == []
    assert not any(e.text.startswith("refined") for e in events if isinstance(e, Partial))
    pipeline.refine_partials = True
    events = stream(pipeline, channel(0, 0.0, 4.8))
    assert calls and any(e.text.startswith("refined") for e in events if isinstance(e, Partial))


class _AtOnce(Executor):
    """Runs each call as it is submitted: a refresh is done before the round that asked for it
    ends, and the thread's timing is out of the test."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def test_a_refresh_on_its_own_thread_reaches_the_partials_after_it():
    """With an executor, the partial that asks for a refresh keeps the first pass's words; the
    partials from the next round on read the refresh."""
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)
    pipeline.partial_second_pass = lambda mels, prompts: ["Refined, words."] * len(mels)
    pipeline.refresh_executor = _AtOnce()
    events = stream(pipeline, channel(0, 0.0, 4.8))
    final = next(e for e in events if isinstance(e, Final))
    partials = [e for e in events if isinstance(e, Partial) and e.utterance_id == final.utterance_id]
    due = next(i for i, p in enumerate(partials) if p.end - p.start >= 1.0)
    refined = [i for i, p in enumerate(partials) if p.text.startswith("refined words")]
    assert refined and refined[0] > due
    assert all(partials[i].stable == 0 for i in refined)


def test_finals_do_not_wait_for_a_refresh_on_its_own_thread():
    """A refresh still running holds back neither the stream nor its final; the channel asks for
    no other refresh meanwhile, and the words of one that ends after its utterance are dropped."""
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)
    release, calls = threading.Event(), []

    def slow(mels, prompts):
        calls.append(len(mels))
        release.wait(60)
        return ["refined words"] * len(mels)

    pipeline.partial_second_pass = slow
    state = open_stream(pipeline)
    with ThreadPoolExecutor(max_workers=1) as executor:
        pipeline.refresh_executor = executor
        events = stream(pipeline, channel(0, 0.0, 4.8), state)
        assert not release.is_set()
        assert [e.text for e in events if isinstance(e, Final)] != []
        assert not any(e.text.startswith("refined") for e in events if isinstance(e, Partial))
        release.set()
    assert calls == [1]
    assert all(ch.refreshing is None and ch.refined is None for ch in state.channels)


def test_a_failed_refresh_leaves_the_partials_to_the_first_pass(caplog):
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)

    def broken(mels, prompts):
        raise RuntimeError("no second pass today")

    pipeline.partial_second_pass = broken
    pipeline.refresh_executor = _AtOnce()
    with caplog.at_level(logging.ERROR, logger="stream.pipeline"):
        events = stream(pipeline, channel(0, 0.0, 4.8))
    assert any(isinstance(e, Final) for e in events)
    assert not any(e.text.startswith("refined") for e in events if isinstance(e, Partial))
    assert "no second pass today" in caplog.text


def test_the_kafka_worker_gives_the_refreshes_a_thread():
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)
    AsrWorker(pipeline, KafkaConfig())
    assert pipeline.refresh_executor is not None
    assert AsrWorker(build_pipeline(enrich=False), KafkaConfig()).pipeline.refresh_executor is None


def test_the_batcher_gives_the_refreshes_a_thread_and_stops_it():
    pipeline = build_pipeline(decoding=DecodingConfig(partial_second_pass_s=1.0), enrich=False)
    batcher = MicroBatcher(pipeline)
    assert pipeline.refresh_executor is not None
    asyncio.run(batcher.close())
    with pytest.raises(RuntimeError):
        pipeline.refresh_executor.submit(print)
    assert MicroBatcher(build_pipeline(enrich=False)).pipeline.refresh_executor is None
