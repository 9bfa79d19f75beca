"""Where callstream keeps what set-up builds: bottom layer, imports nothing of ours."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """Where set-up builds the models too large to commit (the sentence encoder, the general LM).

    ``$CALLSTREAM_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/callstream``
    (``~/.cache/callstream``): outside the work tree, so fresh clones on one
    machine share it.
    """
    root = os.environ.get("CALLSTREAM_CACHE_DIR")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "callstream"
