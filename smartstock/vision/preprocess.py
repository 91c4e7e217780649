"""The one preprocessing function shared by training and the device, so the two cannot drift.

Normalisation (scaling to [-1, 1]) lives inside the model; this function only crops, converts colour
and resizes, and hands back 0..255 values in the dtype the manifest names.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from smartstock.errors import BackendUnavailable, InputError

logger = logging.getLogger(__name__)

Roi = tuple[int, int, int, int]


class InputSpec(BaseModel):
    """What the model's input tensor expects; stored in manifest.json under `input`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("image", description="Input tensor name")
    shape: list[int] = Field(..., min_length=4, max_length=4,
                             description="Tensor shape; -1 for the dynamic batch dimension, e.g. [-1, 96, 96, 1]")
    dtype: Literal["float32", "uint8"] = Field("float32", description="dtype preprocess() returns (values 0..255)")
    layout: Literal["NHWC", "NCHW"] = Field("NHWC", description="Axis order of the tensor")
    color: Literal["gray", "bgr", "rgb"] = Field("gray", description="Channel meaning (gray = 1 channel)")
    resize: Literal["area", "linear"] = Field("area", description="Interpolation used to resize to the input size")
    fit: Literal["stretch", "letterbox"] = Field(
        "stretch", description="How a frame of another aspect ratio meets the input: stretch to the size, or "
                               "letterbox (scale the longer side, keep the aspect, pad with the frame's mean grey)")

    @property
    def height(self) -> int:
        return self.shape[1] if self.layout == "NHWC" else self.shape[2]

    @property
    def width(self) -> int:
        return self.shape[2] if self.layout == "NHWC" else self.shape[3]

    @property
    def channels(self) -> int:
        return self.shape[3] if self.layout == "NHWC" else self.shape[1]

    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed image (no batch axis)."""
        return tuple(self.shape[1:])


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - the edge extra installs it
        raise BackendUnavailable("OpenCV is not installed", hint="pip install 'smartstock[edge]'") from e
    return cv2


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:  # 16-bit industrial cameras: keep the top 8 bits
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(image, 0, 255).astype(np.uint8)
    raise InputError(f"image dtype {image.dtype} is not supported", hint="pass uint8 (or uint16/float 0..255) pixels")


def crop_roi(image: np.ndarray, roi: Roi | None) -> np.ndarray:
    """Crop [x, y, width, height]; a ROI outside the frame is an error (a wrong ROI must not go unnoticed)."""
    if roi is None:
        return image
    x, y, w, h = (int(v) for v in roi)
    H, W = image.shape[:2]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > W or y + h > H:
        raise InputError(f"ROI {list(roi)} does not fit in a {W}x{H} frame",
                         hint="set vision.roi to [x, y, width, height] inside the camera image")
    return image[y:y + h, x:x + w]


def preprocess(image: np.ndarray, spec: InputSpec, roi: Roi | None = None) -> np.ndarray:
    """Frame (HxW gray, HxWx1, HxWx3 BGR or HxWx4 BGRA) -> one model input sample, 0..255, no batch axis."""
    return preprocess_batch([image], spec, roi)[0]


def preprocess_batch(images: Sequence[np.ndarray], spec: InputSpec, roi: Roi | None = None) -> np.ndarray:
    """Frames -> one model input batch (N, *sample shape), 0..255 in the manifest's dtype.

    Each frame goes through exactly the steps of `preprocess()`. The batch is filled in place (one
    allocation, no stack), and small frames of one shape have their colour converted in a single
    call on the stacked batch (conversion is per pixel, so the result is the same): with 96x96 parts
    that was one OpenCV call, and one GIL hand-over, per batch instead of per frame.
    """
    cv2 = _cv2()
    size = (spec.width, spec.height)
    gray, rgb, nchw = spec.color == "gray", spec.color == "rgb", spec.layout == "NCHW"
    area = spec.resize == "area"
    out = np.empty((len(images), *spec.sample_shape()), dtype=np.dtype(spec.dtype))
    crops = [_to_uint8(crop_roi(_checked(image), roi)) for image in images]
    converted_all = False
    if len(crops) > 1 and len({c.shape for c in crops}) == 1 and len(crops) * crops[0].nbytes <= _STACK_MAX_BYTES:
        stacked = np.stack(crops)
        n, h = stacked.shape[:2]
        converted = _colour(stacked.reshape(n * h, *stacked.shape[2:]), cv2, gray, rgb)
        batch = converted.reshape(n, h, *converted.shape[1:])
        if batch.shape[1:3] == (size[1], size[0]):  # already the model's size: one copy into the batch
            out[...] = np.transpose(batch[..., None] if gray else batch, (0, 3, 1, 2) if nchw else (0, 1, 2, 3))
            return out
        crops, converted_all = list(batch), True
    letterbox = spec.fit == "letterbox"
    for i, img in enumerate(crops):
        if not converted_all:  # one by one, into this thread's reused buffer (see _scratch), used up below
            img = _colour(img, cv2, gray, rgb, scratch=True)
        if img.shape[1] != size[0] or img.shape[0] != size[1]:
            img = _letterbox(img, size, area, cv2) if letterbox else _resize(img, size, area, cv2)
        if img.ndim == 2:
            img = img[:, :, None]
        out[i] = np.transpose(img, (2, 0, 1)) if nchw else img  # copied out of the scratch buffer here
    return out


def _resize(img: np.ndarray, size: tuple[int, int], area: bool, cv2) -> np.ndarray:
    shrinking = img.shape[0] > size[1] or img.shape[1] > size[0]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if area and shrinking else cv2.INTER_LINEAR)


def _letterbox(img: np.ndarray, size: tuple[int, int], area: bool, cv2) -> np.ndarray:
    """Scale so the whole frame fits `size` with its aspect ratio kept; centre it on the frame's mean grey.

    Stretching a 600x200 part into a square squeezes a thin scratch along one axis only, so the model
    sees defects of one kind at shapes that depend on the part's aspect; letterboxing keeps them alike.
    """
    h, w = img.shape[:2]
    scale = min(size[0] / w, size[1] / h)
    nw, nh = max(1, min(size[0], round(w * scale))), max(1, min(size[1], round(h * scale)))
    inner = _resize(img, (nw, nh), area, cv2) if (nw, nh) != (w, h) else img
    if (nw, nh) == size:
        return inner
    fill = inner.reshape(-1, 1 if inner.ndim == 2 else inner.shape[2]).mean(axis=0).round().astype(np.uint8)
    out = np.empty((size[1], size[0], *inner.shape[2:]), np.uint8)
    out[...] = fill if inner.ndim == 3 else fill[0]
    top, left = (size[1] - nh) // 2, (size[0] - nw) // 2
    out[top:top + nh, left:left + nw] = inner
    return out


_STACK_MAX_BYTES = 1 << 20  # larger frames are converted one by one: the stacking copy would cost more than it saves


def _checked(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        shape = getattr(image, "shape", None)
        raise InputError(f"not an image: expected an HxW or HxWxC array, got shape {shape}",
                         hint="pass a decoded frame (e.g. from cv2.imread)")
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        raise InputError(f"image has {image.shape[2]} channels; expected 1, 3 or 4")
    return image


def _colour(img: np.ndarray, cv2, gray: bool, rgb: bool, scratch: bool = False) -> np.ndarray:
    """Any of gray / gray x1 / BGR / BGRA -> the model's colour (2-D for gray, 3 channels otherwise).
    `scratch`: the final conversion writes into this thread's reused buffer (valid until its next call)."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if gray:
        if img.ndim != 3:
            return img
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY, dst=_scratch(img.shape[:2]) if scratch else None)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if not rgb:
        return img
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=_scratch(img.shape) if scratch else None)


# Converting a 640x480 frame to grey into a reused buffer took 0.52-0.67 ms instead of 0.80-1.08 ms
# into a fresh one (32 frames, median of 7 rounds, shared 2-core machine, /tmp script; the page faults
# of a new 300 KB array each frame): the buffer is per thread (several inference workers run this at
# once) and per frame shape (a few cameras of different sizes), a few buffers at most.
_SCRATCH = threading.local()
_SCRATCH_SHAPES = 4


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """This thread's uint8 buffer of `shape`; its content is only valid until the next call."""
    buffers: dict[tuple[int, ...], np.ndarray] | None = getattr(_SCRATCH, "buffers", None)
    if buffers is None:
        buffers = _SCRATCH.buffers = {}
    buf = buffers.get(shape)
    if buf is None:
        if len(buffers) >= _SCRATCH_SHAPES:
            buffers.clear()
        buf = buffers[shape] = np.empty(shape, np.uint8)
    return buf
