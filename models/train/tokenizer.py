"""Character vocabulary of the acoustic model: CTC blank, space, apostrophe, a-z.

Characters, not SentencePiece: the real speech we can train on is a few
hours at most, and characters need no LM of their own to spell unseen words
(names, hotwords). The vocabulary travels in the ONNX metadata.
"""

from __future__ import annotations

__all__ = ["BLANK", "VOCAB", "encode_text"]

BLANK = ""
VOCAB: tuple[str, ...] = (BLANK, " ", "'", *"abcdefghijklmnopqrstuvwxyz")
_INDEX = {c: i for i, c in enumerate(VOCAB) if c}


def encode_text(text: str) -> list[int]:
    """Normalised text (lowercase a-z, apostrophe, single spaces) -> token ids (no blank)."""
    ids = []
    for ch in " ".join(text.lower().split()):
        idx = _INDEX.get(ch)
        if idx is None:
            raise ValueError(f"expected only a-z, apostrophe and space, got {ch!r} in {text!r}")
        ids.append(idx)
    return ids
