"""The head recipe's held-out synthetic set: 1 in 50 synthetic utterances, never a real clip."""

from models.train.train_head import _held_out


def test_held_out_utterances_are_synthetic_and_about_one_in_fifty():
    synthetic = [f"ft:train11-{i:06d}" for i in range(5000)]
    real = [f"{corpus}:{i}_speaker_{i}:0" for corpus in ("fsdd", "speechcommands", "an4") for i in range(2000)]
    held = [u for u in synthetic if _held_out(u)]
    assert 60 <= len(held) <= 140
    assert not any(_held_out(u) for u in real)
    assert held == [u for u in synthetic if _held_out(u)]  # stable across runs
