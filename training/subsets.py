"""Small, imbalanced check sets cut from a real class folder, with parts pasted at varying sizes.

`python -m training.subsets --src ../shared/data/pcb_patches --out /tmp/pcb_small --ok 300 --defect 40`
A line camera rarely frames a part the way a dataset's crops do: each patch is scaled by a random
factor and pasted at a random place on a larger frame of random aspect (a flat background of the
patch's own border grey with sensor noise), which is what issue 14's "parts of varying size" means.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from smartstock.vision.images import read_image, scan_image_folder

logger = logging.getLogger(__name__)


def paste_on_frame(patch: np.ndarray, rng: np.random.Generator, scale: tuple[float, float],
                   margin: tuple[float, float]) -> np.ndarray:
    """The patch scaled by a factor from `scale`, on a frame `margin` times larger per side (random aspect)."""
    s = rng.uniform(*scale)
    h, w = patch.shape[:2]
    p = cv2.resize(patch, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_LINEAR)
    ph, pw = p.shape[:2]
    fh, fw = round(ph * rng.uniform(*margin)), round(pw * rng.uniform(*margin))
    border = np.concatenate([p[0].reshape(-1), p[-1].reshape(-1), p[:, 0].reshape(-1), p[:, -1].reshape(-1)])
    frame = np.full((fh, fw, *p.shape[2:]), float(np.median(border)), np.float32)
    frame += rng.normal(0, 3.0, frame.shape)
    y, x = int(rng.integers(0, fh - ph + 1)), int(rng.integers(0, fw - pw + 1))
    frame[y:y + ph, x:x + pw] = p
    return np.clip(frame, 0, 255).astype(np.uint8)


def make_subset(src: Path, out: Path, counts: dict[str, int], *, seed: int = 0, scale: tuple[float, float] = (1.0, 1.0),
                margin: tuple[float, float] = (1.0, 1.0)) -> dict[str, int]:
    """out/<class>/ with counts[class] images drawn at random from src/<class>/ (pasted when margin > 1)."""
    folder = scan_image_folder(src)
    rng = np.random.default_rng(seed)
    written = {}
    for label, n in counts.items():
        if label not in folder.labels:
            raise ValueError(f"{src} has no class folder {label!r} (has {folder.labels})")
        y = folder.labels.index(label)
        files = [p for p, c in folder.files if c == y]
        picked = rng.choice(len(files), size=min(n, len(files)), replace=False)
        d = Path(out) / label
        d.mkdir(parents=True, exist_ok=True)
        for i in picked:
            img = read_image(files[i])
            if margin[1] > 1.0 or scale != (1.0, 1.0):
                img = paste_on_frame(img, rng, scale, margin)
            cv2.imwrite(str(d / f"{files[i].stem}.png"), img)
        written[label] = len(picked)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.subsets", description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ok", type=int, default=300)
    p.add_argument("--defect", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, nargs=2, default=(0.8, 2.0), help="patch scale range")
    p.add_argument("--margin", type=float, nargs=2, default=(1.0, 2.5), help="frame side / patch side range")
    args = p.parse_args(argv)
    n = make_subset(args.src, args.out, {"ok": args.ok, "defect": args.defect}, seed=args.seed,
                    scale=tuple(args.scale), margin=tuple(args.margin))
    print(f"wrote {n} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
