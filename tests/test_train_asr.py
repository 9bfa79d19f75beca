"""The training recipe end to end on a few utterances: distillation targets, two steps, resume."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is in the [train] extra")
pytest.importorskip("faster_whisper", reason="the teacher is in the [train] extra")

FIXTURE = Path(__file__).parent / "fixtures" / "speech16k.flac"


def _manifest(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("path\ttext\tspeaker\tduration\n")
        for i, (speaker, text) in enumerate(rows):
            f.write(f"{FIXTURE.resolve()}\t{text}\t{speaker}\t{i % 3 + 1.0}\n")
    return path


@pytest.fixture
def data(tmp_path):
    """A data root shaped like ../shared/data/speech, every clip the fixture."""
    root = tmp_path / "speech"
    _manifest(root / "fsdd" / "manifest.tsv", [("jackson", "one two"), ("nicolas", "three")])
    _manifest(root / "speechcommands" / "manifest.tsv", [(f"spk{i}", "yes") for i in range(6)])
    _manifest(root / "an4" / "manifest.tsv", [("", "a b c"), ("", "go")])
    corpus = _manifest(tmp_path / "corpus" / "manifest.tsv", [("piper", "hello there"), ("flite", "four one")])
    return root, corpus


def test_teacher_targets_cover_every_utterance_and_stretch(data, tmp_path):
    from models.data import load_manifest
    from models.teacher import DIM, TeacherTargets, compute_targets

    _, corpus = data
    utts = load_manifest(corpus)
    compute_targets(utts, tmp_path / "teacher")
    t = TeacherTargets(tmp_path / "teacher")
    start, n = t.index[str(FIXTURE.resolve())]
    assert n > 10
    same = t.get(FIXTURE, n)
    assert same.shape == (n, DIM) and np.isfinite(same).all()
    assert abs(float(same.mean())) < 1.0  # standardized
    assert t.posteriors(FIXTURE, n) is None  # no CTC head trained yet
    stretched = t.get(FIXTURE, int(n * 1.15))
    assert stretched.shape == (int(n * 1.15), DIM)
    np.testing.assert_allclose(stretched[0], same[0], atol=1e-5)
    np.testing.assert_allclose(stretched[-1], same[-1], atol=1e-5)
    assert t.get(tmp_path / "absent.flac", 10) is None


def test_two_steps_with_distillation_then_resume(data, tmp_path):
    from models.conformer import ConformerConfig
    from models.data import load_manifest
    from models.teacher import compute_targets, train_teacher_head
    from models.train_asr import TrainConfig, train

    root, corpus = data
    compute_targets(load_manifest(corpus), tmp_path / "teacher")
    head = train_teacher_head(tmp_path / "teacher", load_manifest(corpus), epochs=1)
    assert 0.0 <= head["held_out_wer"] and head["held_out"] == 1
    from models.teacher import TeacherTargets

    post = TeacherTargets(tmp_path / "teacher").posteriors(FIXTURE, 40)
    assert post.shape == (40, 29) and np.allclose(post.sum(axis=1), 1.0, atol=1e-3)
    cfg = TrainConfig(
        out=tmp_path / "run", corpora=(corpus,), heldout_voice=None, data_root=root, steps=2, warmup=1,
        batch_seconds=6.0, threads=1, workers=0, eval_every=2, ckpt_every=1, teacher=tmp_path / "teacher",
        distill_layer=0, amp="off",
        model=ConformerConfig(d_model=32, num_layers=2, num_heads=2, conv_kernel=5, subsampling_channels=8),
    )
    best = train(cfg)
    assert best.exists()
    lines = [json.loads(x) for x in (cfg.out / "log.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert [x["step"] for x in steps] == [1, 2]
    assert all(x["distill"] > 0 and x["kl"] > 0 and np.isfinite(x["loss"]) for x in steps)
    assert any("dev" in x and set(x["dev"]) == {"fsdd_dev", "speechcommands_dev", "an4_dev"} for x in lines)

    cfg.steps, cfg.pack_prob = 3, 1.0  # the resumed step packs its batch in pairs
    train(cfg)
    steps = [json.loads(x) for x in (cfg.out / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    assert [x["step"] for x in steps] == [1, 2, 3]  # resumed at step 2, not from scratch


def test_teacher_targets_grow_incrementally(data, tmp_path):
    from models.data import Utterance, load_manifest
    from models.teacher import TeacherTargets, compute_targets

    _, corpus = data
    first = load_manifest(corpus)
    compute_targets(first, tmp_path / "t")
    before = TeacherTargets(tmp_path / "t")
    n = before.index[str(FIXTURE.resolve())][1]
    other = tmp_path / "copy.flac"
    other.write_bytes(FIXTURE.read_bytes())
    compute_targets([*first, Utterance(other, "hello")], tmp_path / "t")
    after = TeacherTargets(tmp_path / "t")
    assert after.index[str(FIXTURE.resolve())] == before.index[str(FIXTURE.resolve())]
    assert after.index[str(other.resolve())][0] == n  # appended after the one existing utterance
    np.testing.assert_allclose(after.get(other, n), after.get(FIXTURE, n), atol=0.05)


def test_packed_batches_join_pairs_with_a_quiet_gap_and_a_space():
    import random

    from models.teacher import DIM
    from models.tokenizer import encode_text
    from models.train_asr import collate, pack_pairs

    def frames(n, value, dim=80):
        return np.full((n, dim), value, np.float32)

    items = [(frames(50, 1.0), encode_text("one two"), frames(10, 0.5, DIM), None),
             (frames(40, 2.0), encode_text("three"), None, None),
             (frames(30, 3.0), encode_text("go"), frames(5, 0.5, DIM), None)]
    gap = frames(200, -5.0)
    packed = pack_pairs(items, gap, random.Random(0))
    assert len(packed) == 2 and packed[1] is items[2]
    joined, ids, distill, posteriors = packed[0]
    g = joined.shape[0] - 90
    assert 30 <= g <= 150
    assert (joined[:50] == 1.0).all() and (joined[50 : 50 + g] == -5.0).all() and (joined[50 + g :] == 2.0).all()
    assert ids == encode_text("one two three") and distill is None and posteriors is None

    feats, lengths, targets, target_lengths, distill, distill_mask, _, _ = collate(items, pack_prob=1.0, gap=gap)
    assert 120 <= int(lengths[0]) <= 240 and int(lengths[1]) == 30
    assert target_lengths.tolist() == [len(encode_text("one two three")), len(encode_text("go"))]
    assert not distill_mask[0].any() and int(distill_mask[1].sum()) == 5
    assert collate(items)[1].tolist() == [50, 40, 30]  # packing is off by default


def test_tokenizers_are_compared_on_the_same_teacher_features(data, tmp_path):
    pytest.importorskip("sentencepiece", reason="sentencepiece is in the [train] extra")
    from models.data import load_manifest
    from models.teacher import compute_targets
    from models.tokenizer_eval import PieceUnits, compare

    _, corpus = data
    units = PieceUnits(["hello there", "four one", "one two three four"], 16)
    ids = units.encode("one four")
    assert min(ids) >= 1 and units.decode(ids) == "one four"  # 0 stays the CTC blank
    compute_targets(load_manifest(corpus), tmp_path / "teacher")
    rows = compare(tmp_path / "teacher", corpus, [16], epochs=1)
    assert [r["tokenizer"] for r in rows] == ["characters", "sentencepiece-16"]
    assert rows[0]["units"] == 29 and all(r["held_out"] == 1 and r["held_out_wer"] >= 0 for r in rows)


def test_vtlp_moves_formants_up_or_down_and_keeps_the_band():
    from models.data import vtlp
    from operators.features import LogMelOperator

    op = LogMelOperator()
    t = np.arange(16000) / 16000
    feats = op.feed(op.new_state(), (0.3 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32))
    peak = int(feats.mean(0).argmax())
    np.testing.assert_allclose(vtlp(feats, 1.0, op.config), feats, atol=1e-5)
    assert int(vtlp(feats, 1.12, op.config).mean(0).argmax()) > peak  # shorter tract: formants rise
    assert int(vtlp(feats, 0.88, op.config).mean(0).argmax()) < peak
    warped = vtlp(feats, 1.12, op.config)
    assert warped.shape == feats.shape and warped.dtype == np.float32
    assert feats.min() - 1e-5 <= warped.min() and warped.max() <= feats.max() + 1e-5  # interpolation only


def test_quiet_edges_put_near_silence_around_the_clip():
    from models.data import SAMPLE_RATE, Augmenter

    x = np.full(8000, 0.5, np.float32)
    aug = Augmenter(0)
    for _ in range(20):
        y = aug._quiet_edges(x)
        lead = int(np.argmax(np.abs(y) > 0.25))
        assert 0 <= lead <= SAMPLE_RATE and y.size - lead - x.size <= SAMPLE_RATE // 2
        noise_std = 0.5 * 10 ** (-35 / 20)  # the loudest level drawn, relative to the peak
        assert np.std(y[lead : lead + x.size] - x) < 1.1 * noise_std
        assert np.std(np.delete(y, np.s_[lead : lead + x.size])) < 1.1 * noise_std


def test_calibration_features_are_the_real_training_split_and_some_synthetic(data):
    from models.data import Augmenter, calibration_features, load_audio, real_speech_splits

    root, corpus = data
    real = sum(len(s["train"]) for s in real_speech_splits(root).values())
    feats = calibration_features(root, corpus, n_synthetic=1, seed=3)
    assert len(feats) == real + 1
    # Every clip is the fixture: the clean ones equal its features, the augmented ones do not.
    clean = Augmenter(0).features_of(load_audio(FIXTURE), augment=False)
    same = sum(f.shape == clean.shape and np.array_equal(f, clean) for f in feats)
    assert 0 < same < len(feats)
    assert all(f.dtype == np.float32 and f.shape[1] == 80 for f in feats)


def test_training_dither_is_the_pipelines():
    from models.data import Augmenter
    from operators.audio import dither

    zeros = np.zeros(16000, np.float32)
    with_dither = Augmenter(0, dither=True).features_of(zeros, augment=False)
    assert np.array_equal(with_dither, Augmenter(0).features_of(dither(zeros, 0), augment=False))
    assert with_dither.min() > Augmenter(0).features_of(zeros, augment=False).max()
