"""Golden samples: a few model inputs with their expected outputs, stored in the manifest as text.

Used for the parity check at export and the smoke test after an over-the-air install, for every
model kind (defect classifier, demand forecaster).
"""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np

from smartstock.errors import ModelError


def encode_array(a: np.ndarray) -> str:
    """ndarray -> base64 of zlib-compressed .npy bytes (small, exact, dtype kept)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return base64.b64encode(zlib.compress(buf.getvalue(), 9)).decode("ascii")


def decode_array(s: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(zlib.decompress(base64.b64decode(s))), allow_pickle=False)
    except (ValueError, zlib.error, OSError) as e:
        raise ModelError(f"golden sample is not valid base64 .npy data: {e}") from None


def max_abs_diff(got: np.ndarray, expected: np.ndarray) -> float:
    """Largest |got - expected| (inf when the shapes differ)."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
