"""Reader of CTranslate2's ``model.bin``: named tensors, dequantised to float32 numpy.

The format is defined by ``ModelSpec._serialize`` in the ``ctranslate2``
package (``specs/model_spec.py``), binary version 6::

    uint32 version; string spec name; uint32 revision; uint32 n_variables
    n_variables x (string name; uint8 rank; rank x uint32 dim; uint8 dtype id;
                   uint32 n_bytes; n_bytes of little-endian data)
    uint32 n_aliases; n_aliases x (string alias; string target)

where a string is a uint16 length (including a NUL) followed by the bytes
and the NUL. dtype ids: float32, int8, int16, int32, float16, bfloat16.
An int8 ``X/weight`` comes with a float32 ``X/weight_scale`` (one scale per
output row; the float weight is ``int8 / scale``).

We read it ourselves rather than load it through ctranslate2 because
ctranslate2 gives no access to the weights, and torch needs them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["read_ct2_model"]

_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, "bfloat16")
_SUPPORTED_VERSIONS = (5, 6)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.take("H")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        if not raw.endswith(b"\0"):
            raise ValueError(f"expected a NUL-terminated string at byte {self.pos - n}, got {raw[-8:]!r}")
        return raw[:-1].decode("utf-8")

    def array(self, dtype_id: int, n_bytes: int, shape: tuple[int, ...]) -> np.ndarray:
        raw = self.data[self.pos : self.pos + n_bytes]
        if len(raw) != n_bytes:
            raise ValueError(f"expected {n_bytes} bytes at {self.pos}, got {len(raw)}: the file is truncated")
        self.pos += n_bytes
        dtype = _DTYPES[dtype_id]
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            return bits.view(np.float32).reshape(shape)
        return np.frombuffer(raw, dtype).reshape(shape)


def read_ct2_model(path: Path) -> tuple[str, dict[str, np.ndarray]]:
    """(spec name, {variable name: float32 array}) of a CTranslate2 ``model.bin``.

    int8 weights are dequantised with their ``weight_scale``; aliases become
    entries that share their target's array.
    """
    cur = _Cursor(Path(path).read_bytes())
    version = cur.take("I")
    if version not in _SUPPORTED_VERSIONS:
        raise ValueError(f"expected CTranslate2 binary version {_SUPPORTED_VERSIONS}, got {version}")
    name = cur.string()
    cur.take("I")  # the spec revision: the Whisper layout has one
    raw: dict[str, np.ndarray] = {}
    for _ in range(cur.take("I")):
        var = cur.string()
        shape = tuple(cur.take("I") for _ in range(cur.take("B")))
        dtype_id = cur.take("B")
        raw[var] = cur.array(dtype_id, cur.take("I"), shape)
    aliases = {cur.string(): cur.string() for _ in range(cur.take("I"))}

    out: dict[str, np.ndarray] = {}
    for var, value in raw.items():
        if var.endswith("_scale") and var[: -len("_scale")] in raw:
            continue
        scale = raw.get(var + "_scale")
        if value.dtype == np.int8 and scale is not None:
            value = value.astype(np.float32) / scale.astype(np.float32).reshape(-1, *([1] * (value.ndim - 1)))
        out[var] = np.asarray(value, np.float32) if value.dtype.kind == "f" or scale is not None else value
    for alias, target in aliases.items():
        out[alias] = out[target]
    return name, out
