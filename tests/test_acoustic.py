"""Acoustic model parity: torch vs ONNX, streaming vs whole-utterance, and the runtime operator."""


import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")

from models.runtime import AcousticModel  # noqa: E402
from operators.acoustic import AcousticOperator  # noqa: E402
from stream.errors import ModelError  # noqa: E402

from tests.conftest import TINY_CHUNK as CHUNK, TINY_LEFT as LEFT  # noqa: E402

VOCAB_SIZE = 29


@pytest.fixture(scope="module")
def model(tiny_torch_model):
    return tiny_torch_model


@pytest.fixture(scope="module")
def exported(tiny_onnx):
    return tiny_onnx["step"], tiny_onnx["full"], tiny_onnx["int8"]


def _feats(t=173, seed=1):
    return np.random.default_rng(seed).normal(10, 3, size=(1, t, 80)).astype(np.float32)


def _stream_torch(model, x):
    a, c, n = model.init_cache(1, LEFT)
    outs, pos = [], 0
    span = 4 * CHUNK + 3
    with torch.no_grad():
        while x.shape[1] - pos >= span:
            lp, a, c, n = model.infer(torch.from_numpy(x[:, pos : pos + span]), a, c, n)
            outs.append(lp)
            pos += 4 * CHUNK
        if x.shape[1] - pos >= 7:
            outs.append(model.infer(torch.from_numpy(x[:, pos:]), a, c, n)[0])
    return torch.cat(outs, 1).numpy()


def test_chunked_streaming_equals_full_context_with_the_same_chunk_mask(model):
    x = _feats()
    with torch.no_grad():
        full, n = model(torch.from_numpy(x), torch.tensor([x.shape[1]]), chunk=CHUNK, left=LEFT)
    streamed = _stream_torch(model, x)
    assert streamed.shape == full.shape == (1, int(n[0]), VOCAB_SIZE)
    np.testing.assert_allclose(streamed, full.numpy(), atol=1e-5)


def test_onnx_step_matches_torch(model, exported):
    am = AcousticModel(exported[0])
    x = _feats(4 * CHUNK + 3)
    a, c, n = model.init_cache(1, LEFT)
    with torch.no_grad():
        ref = model.infer(torch.from_numpy(x), a, c, n)
    lp, caches = am.step(x, [{"att_cache": a.numpy()[:, 0], "conv_cache": c.numpy()[:, 0], "cache_len": n.numpy()[0]}])
    np.testing.assert_allclose(lp, ref[0].numpy(), atol=1e-3)
    for name, r in zip(("att_cache", "conv_cache"), ref[1:3]):
        np.testing.assert_allclose(caches[0][name], r.numpy()[:, 0], atol=1e-3)
    assert int(caches[0]["cache_len"]) == int(ref[3][0])


def test_onnx_streaming_operator_equals_exported_whole_sequence_model(exported):
    import onnxruntime as ort

    x = _feats()
    full = ort.InferenceSession(str(exported[1]), providers=["CPUExecutionProvider"])
    ref, n = full.run(None, {"feats": x, "lengths": np.array([x.shape[1]], np.int64)})
    op = AcousticOperator(AcousticModel(exported[0]))
    state = op.new_state()
    rng = np.random.default_rng(3)
    outs, i = [], 0
    while i < x.shape[1]:
        k = int(rng.integers(1, 30))
        outs += op.feed(state, x[0, i : i + k])
        i += k
    outs += op.flush(state)
    streamed = np.concatenate(outs)
    assert streamed.shape == ref[0].shape and int(n[0]) == streamed.shape[0]
    np.testing.assert_allclose(streamed, ref[0], atol=1e-4)


def test_feed_batch_equals_separate_streams(exported):
    op = AcousticOperator(AcousticModel(exported[0]))
    xs = [_feats(60, seed=s)[0] for s in range(3)]
    solo = [np.concatenate(op.feed(op.new_state(), x)) for x in xs]
    states = [op.new_state() for _ in xs]
    for s, x in zip(states, xs):
        op.push(s, x)
    batched = [[] for _ in xs]
    while all(op.ready(s) for s in states):
        for i, lp in enumerate(op.feed_batch(states)):
            batched[i].append(lp)
    for a, b in zip(solo, batched):
        np.testing.assert_allclose(np.concatenate(b), a, atol=1e-5)


def test_run_partial_is_a_shorter_chunk_and_keeps_the_rest(exported):
    op = AcousticOperator(AcousticModel(exported[0]))
    x = _feats(4 * CHUNK + 3 + 4 * 2 + 1)[0]  # one whole chunk, then 2 encoder frames' worth and 1 frame more
    state, ref = op.new_state(), op.new_state()
    assert op.run_partial(state) is None
    op.push(state, x)
    whole = op.feed_batch([state])[0]
    part = op.run_partial(state)
    assert part.shape == (2, VOCAB_SIZE) and state.pending.shape[0] == 4 and state.frames_out == CHUNK + 2
    assert op.run_partial(state) is None  # 4 frames make no encoder frame
    lp, caches = op.model.step(x[None, : 4 * CHUNK + 3], [ref.caches])
    lp2 = op.model.step(x[None, 4 * CHUNK : 4 * CHUNK + 4 * 2 + 3], caches)[0]
    np.testing.assert_allclose(whole, lp[0], atol=1e-5)
    np.testing.assert_allclose(part, lp2[0], atol=1e-5)


def test_metadata_carries_the_settings_and_int8_loads(exported):
    spec = AcousticModel(exported[0]).spec
    assert (spec.chunk_frames, spec.left_frames, spec.subsampling, spec.context_frames) == (CHUNK, LEFT, 4, 3)
    assert spec.vocab[0] == "" and spec.vocab[1] == " " and len(spec.vocab) == VOCAB_SIZE
    assert spec.features.num_mel_bins == 80 and not spec.quantized
    q = AcousticModel(exported[2])
    assert q.spec.quantized
    x = _feats(4 * CHUNK + 3)
    lp = q.step(x, [q.init_cache()])[0]
    assert lp.shape == (1, CHUNK, VOCAB_SIZE)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-4)


def test_int8_quantizes_every_matmul_with_a_weight(exported):
    import onnx

    for path, blocks in ((exported[2], 2),):
        graph = onnx.load(str(path)).graph
        weights = {i.name for i in graph.initializer}
        float_weight = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and weights & set(n.input)]
        assert not float_weight, f"{path}: MatMuls with float weights left: {float_weight}"
        # per block: q, k, v, out, 2 feed-forward x 2, 2 pointwise; then the subsampling output and the head
        assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 10 * blocks + 2


def test_missing_or_foreign_model_is_a_clear_error(tmp_path, exported):
    with pytest.raises(ModelError, match="does not exist"):
        AcousticModel(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="expected model format"):
        AcousticModel(exported[1])
