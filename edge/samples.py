"""Tiny generator of PCB-like part images for the demo, tests and benchmarks (numpy + OpenCV only).

Training has its own synthetic generator, but it lives in `training/` (TensorFlow); the device
must not import it, so the demo and tests draw their parts here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def part_image(rng: np.random.Generator, size: int = 96, defect: bool = False) -> np.ndarray:
    """One BGR image: green board, copper traces and pads; a defect adds a break or a blob."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (40 + rng.integers(0, 20), 110 + rng.integers(0, 30), 40 + rng.integers(0, 20))
    copper = (60, 160, 200)
    for _ in range(int(rng.integers(2, 5))):
        y = int(rng.integers(8, size - 8))
        cv2.line(img, (4, y), (size - 4, y), copper, int(rng.integers(2, 5)))
    for _ in range(int(rng.integers(2, 6))):
        c = (int(rng.integers(10, size - 10)), int(rng.integers(10, size - 10)))
        cv2.circle(img, c, int(rng.integers(3, 7)), copper, -1)
    if defect:
        c = (int(rng.integers(15, size - 15)), int(rng.integers(15, size - 15)))
        if rng.random() < 0.5:
            cv2.circle(img, c, int(rng.integers(4, 9)), (30, 30, 30), -1)       # open / pin hole
        else:
            cv2.line(img, c, (c[0] + 12, c[1] + 14), copper, 3)                 # short / spur
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def write_parts(folder: Path, n: int, *, size: int = 96, defect_rate: float = 0.1, seed: int = 0) -> list[Path]:
    """Write `n` part images named part-00000.png ... into `folder`; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"part-{i:05d}.png"
        cv2.imwrite(str(p), part_image(rng, size, defect=bool(rng.random() < defect_rate)))
        paths.append(p)
    return paths


def write_video(path: Path, n: int, *, size: int = 96, fps: float = 10.0, seed: int = 0) -> Path:
    """An MJPG .avi of `n` part frames (OpenCV can always write and read this)."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size, size))
    try:
        for _ in range(n):
            writer.write(part_image(rng, size, defect=bool(rng.random() < 0.1)))
    finally:
        writer.release()
    return path
