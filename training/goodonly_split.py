"""Which good images fill the memory bank and which are held out to calibrate the threshold.

A held-out image must be as new to the bank as a future part is. Crops cut from one picture (windows of
a board, tiles of a sheet) are near twins: with its twins in the bank a held-out crop scores lower than
a crop of an unseen part would, and the threshold lands too low. When the file names tell the source
picture (the part before the first `_`, `-`, `.` or space: `00041000_c0.png` and `00041000_0_t.png`
are both from picture `00041000`) and a typical source holds at most MAX_CROPS_PER_SOURCE images, whole
sources are held out; otherwise single images are (a prefix shared by many images names a camera, a
day or a lot, not a picture).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

SEPARATOR = re.compile(r"[_\-. ]")
#: Fewest sources for holding out by source: fewer, and a 20% share cannot be met by whole sources.
MIN_SOURCES = 10
#: A source holding more than this share of the images is no source but a common word (`IMG_0001.png`).
MAX_SOURCE_SHARE = 0.1
#: Crops cut from one picture are a few (windows of a board, tiles of a sheet); when the typical "source"
#: holds more, the prefix names a camera, a day, a lot or a part number (`cam04_0001.png`,
#: `20261201-0001.png`), whose conditions the bank must see: then images are held out one by one.
MAX_CROPS_PER_SOURCE = 10


def source_of(name: str) -> str:
    """The source picture a file name points to: its stem up to the first separator (the stem if none)."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return SEPARATOR.split(stem, maxsplit=1)[0] or stem


@dataclass
class HoldOut:
    train: list[int]           # indices into the names given, for the memory bank
    calib: list[int]           # held out for the threshold
    by: str                    # "source" (whole source pictures) or "image"
    sources: int               # distinct sources by file name (= images when names share none)
    warnings: list[str] = field(default_factory=list)


def hold_out(names: Sequence[str], fraction: float, seed: int = 0) -> HoldOut:
    """Hold out about `fraction` of the images (at least 2) for calibration, by whole source picture when the
    file names show several crops per source, else by image (the earlier split: same seed, same images)."""
    n = len(names)
    n_cal = max(2, int(round(n * fraction)))
    rng = np.random.default_rng(seed)
    keys = [source_of(x) for x in names]
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    largest = max((len(g) for g in groups.values()), default=0)
    typical = float(np.median([len(g) for g in groups.values()])) if groups else 0.0
    shared = len(groups) < n
    if (shared and len(groups) >= MIN_SOURCES and largest <= MAX_SOURCE_SHARE * n
            and typical <= MAX_CROPS_PER_SOURCE):
        names_sorted = sorted(groups)
        order = [names_sorted[i] for i in rng.permutation(len(groups))]
        calib: list[int] = []
        for k in order:
            if len(calib) >= n_cal:
                break
            calib += groups[k]
        held = set(calib)
        return HoldOut([i for i in range(n) if i not in held], sorted(calib), "source", len(groups))
    order = rng.permutation(n)
    out = HoldOut([int(i) for i in order[n_cal:]], [int(i) for i in order[:n_cal]], "image", len(groups))
    if shared and 1 < len(groups) < MIN_SOURCES:
        out.warnings.append(
            f"the file names point to only {len(groups)} source pictures ({', '.join(sorted(groups)[:5])}"
            f"{', ...' if len(groups) > 5 else ''}): held-out good images have near twins in the memory bank, "
            f"so the threshold may flag more unseen good parts than asked; give good parts from more pictures")
    return out
