"""Synthetic defect images: textured metal/cast surfaces with scratches, cracks, holes, stains, inclusions.

Reproducible by seed (image i of a run depends only on seed and i), written as class folders so the
result is an ordinary training folder. Used by the tests, the demo and the shipped default model.

    python -m training.synth --out data/synth --n 1000 [--classes multi|binary] [--size 128] [--color]
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

DEFECT_KINDS = ("scratch", "crack", "hole", "stain", "inclusion")


def surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A float32 gray surface: brushed or cast texture, grain, uneven lighting and faint machining marks."""
    base = rng.uniform(85, 175)
    noise = rng.normal(0, 1, (size * 2, size * 2)).astype(np.float32)
    if rng.random() < 0.6:  # brushed: streaks along a random direction
        tex = cv2.GaussianBlur(noise, (0, 0), sigmaX=rng.uniform(4, 10), sigmaY=0.6)
        m = cv2.getRotationMatrix2D((size, size), rng.uniform(0, 180), 1.0)
        tex = cv2.warpAffine(tex, m, (size * 2, size * 2), borderMode=cv2.BORDER_REFLECT)
    else:  # cast / sand-blasted: isotropic mottling
        tex = cv2.GaussianBlur(noise, (0, 0), sigmaX=rng.uniform(1.2, 3.5))
    tex = tex[size // 2:size // 2 + size, size // 2:size // 2 + size]
    tex = tex / (tex.std() + 1e-6) * rng.uniform(3, 9)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    a = rng.uniform(0, 2 * math.pi)
    light = rng.uniform(0, 25) * (xx * math.cos(a) + yy * math.sin(a))
    light -= rng.uniform(0, 20) * (xx ** 2 + yy ** 2)
    img = base + tex + light + rng.normal(0, rng.uniform(1.0, 3.0), (size, size))
    if rng.random() < 0.3:  # faint regular machining marks: benign, must not be called a defect
        period = rng.uniform(6, 14)
        img += rng.uniform(1, 3) * np.sin(2 * math.pi * (xx * math.cos(a + 1) + yy * math.sin(a + 1)) * size / period)
    return img.astype(np.float32)


def _polyline_mask(size: int, pts: np.ndarray, width: int) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    cv2.polylines(mask, [np.round(pts * 4).astype(np.int32)], False, 1.0, thickness=width, lineType=cv2.LINE_AA,
                  shift=2)
    return mask


def _sign(rng: np.random.Generator, p_dark: float) -> float:
    return -1.0 if rng.random() < p_dark else 1.0


def add_scratch(img: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    length = rng.uniform(0.35, 0.85) * s
    a = rng.uniform(0, math.pi)
    c = rng.uniform(0.25, 0.75, 2) * s
    t = np.linspace(-0.5, 0.5, 24)[:, None]
    d = np.array([math.cos(a), math.sin(a)])
    bend = rng.uniform(-0.08, 0.08) * s * (1 - (2 * t) ** 2)
    pts = c + t * length * d + bend * np.array([-d[1], d[0]])
    mask = _polyline_mask(s, pts, int(rng.integers(2, 4)))
    fade = np.clip(rng.uniform(0.7, 1.0) + rng.normal(0, 0.1, mask.shape), 0.5, 1.0)
    img += _sign(rng, 0.4) * rng.uniform(40, 75) * cv2.GaussianBlur(mask, (0, 0), 0.5) * fade


def add_crack(img: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    mask = np.zeros_like(img)
    for branch in range(1 + int(rng.integers(0, 3))):
        p = rng.uniform(0.25, 0.75, 2) * s
        a = rng.uniform(0, 2 * math.pi)
        pts = [p]
        for _ in range(int(rng.integers(10, 24)) // (branch + 1)):
            a += rng.normal(0, 0.55)
            p = p + rng.uniform(1.5, 3.5) * np.array([math.cos(a), math.sin(a)])
            pts.append(p)
        mask = np.maximum(mask, _polyline_mask(s, np.array(pts), int(rng.integers(1, 3))))
    img -= rng.uniform(45, 90) * mask


def add_hole(img: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    r = rng.uniform(0.03, 0.08) * s
    c = rng.uniform(0.2, 0.8, 2) * s
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    d = np.hypot(xx - c[0], yy - c[1])
    inside = np.clip(r - d + 0.5, 0, 1)
    a = rng.uniform(0, 2 * math.pi)
    rim = np.exp(-((d - r) ** 2) / 1.5) * (0.5 + 0.5 * np.cos(np.arctan2(yy - c[1], xx - c[0]) - a))
    depth = rng.uniform(20, 55)
    img[:] = img * (1 - inside) + (depth + rng.normal(0, 3, img.shape)) * inside + rng.uniform(15, 40) * rim


def add_stain(img: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    blob = np.zeros_like(img)
    c = rng.uniform(0.25, 0.75, 2) * s
    for _ in range(int(rng.integers(2, 5))):
        o = c + rng.normal(0, 0.05 * s, 2)
        axes = (int(rng.uniform(0.05, 0.14) * s), int(rng.uniform(0.04, 0.10) * s))
        cv2.ellipse(blob, (int(o[0]), int(o[1])), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    blob = cv2.GaussianBlur(blob, (0, 0), rng.uniform(1.5, 3))
    edge = np.clip(blob * (1 - blob) * 4, 0, 1)  # dried stains have a darker rim
    img += _sign(rng, 0.7) * rng.uniform(32, 55) * blob - rng.uniform(5, 15) * edge


def add_inclusion(img: np.ndarray, rng: np.random.Generator) -> None:
    s = img.shape[0]
    c = rng.uniform(0.2, 0.8, 2) * s
    spread = rng.uniform(0.03, 0.08) * s
    mask = np.zeros_like(img)
    for _ in range(int(rng.integers(4, 10))):
        p = c + rng.normal(0, spread, 2)
        cv2.circle(mask, (int(p[0] * 4), int(p[1] * 4)), int(rng.uniform(1.1, 2.4) * 4), 1.0, -1, cv2.LINE_AA, 2)
    img += _sign(rng, 0.8) * rng.uniform(50, 90) * mask


DRAW = {"scratch": add_scratch, "crack": add_crack, "hole": add_hole, "stain": add_stain, "inclusion": add_inclusion}


def make_image(kind: str, rng: np.random.Generator, size: int = 128, color: bool = False) -> np.ndarray:
    """One uint8 image (HxW gray or HxWx3 BGR) of class `kind` ("ok" or a DEFECT_KINDS name)."""
    img = surface(rng, size)
    if kind != "ok":
        DRAW[kind](img, rng)
    if rng.random() < 0.3:  # slight defocus, as on a real line
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.8))
    if color:
        tint = rng.uniform(0.8, 1.15, 3).astype(np.float32)
        img = img[:, :, None] * tint
    return np.clip(img, 0, 255).astype(np.uint8)


def class_plan(n: int, classes: str, ok_fraction: float,
               kinds: tuple[str, ...] = DEFECT_KINDS) -> list[tuple[str, str]]:
    """(folder, defect kind) per image: `multi` = one folder per kind, `binary` = ok/ and defect/."""
    unknown = set(kinds) - set(DEFECT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown defect kinds {sorted(unknown)}; choose from {DEFECT_KINDS}")
    n_ok = int(round(n * ok_fraction))
    plan = [("ok", "ok")] * n_ok
    for i in range(n - n_ok):
        kind = kinds[i % len(kinds)]
        plan.append((kind if classes == "multi" else "defect", kind))
    return plan


def generate(out: Path, n: int, *, seed: int = 0, size: int = 128, classes: str = "multi", color: bool = False,
             ok_fraction: float = 0.5, kinds: tuple[str, ...] = DEFECT_KINDS) -> dict[str, int]:
    """Write n images into out/<class>/<i>.png; returns the count per class folder."""
    if classes not in ("multi", "binary"):
        raise ValueError(f"classes must be 'multi' or 'binary', got {classes!r}")
    plan = class_plan(n, classes, ok_fraction, kinds)
    counts: dict[str, int] = {}
    for i, (folder, kind) in enumerate(plan):
        rng = np.random.default_rng([seed, i])
        d = Path(out) / folder
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{kind}_{seed}_{i:06d}.png"), make_image(kind, rng, size, color))
        counts[folder] = counts.get(folder, 0) + 1
    logger.info("wrote %d synthetic images to %s: %s", len(plan), out, counts)
    return counts

def generate_counts(out: Path, counts: dict[str, int], *, seed: int = 0, sizes: tuple[int, int] = (96, 96),
                    color: bool = False) -> dict[str, int]:
    """Imbalanced sets: out/<class>/ with counts[class] images ("ok" or a DEFECT_KINDS name), each image
    a square side drawn from `sizes` (parts of varying size). Returns the counts written."""
    unknown = set(counts) - set(DEFECT_KINDS) - {"ok"}
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; choose from ok, {', '.join(DEFECT_KINDS)}")
    for c, (kind, n) in enumerate(sorted(counts.items())):
        d = Path(out) / kind
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, c, i])
            size = int(rng.integers(sizes[0], sizes[1] + 1))
            cv2.imwrite(str(d / f"{kind}_{seed}_{i:06d}.png"), make_image(kind, rng, size, color))
    return dict(counts)



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.synth", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (class subfolders are created)")
    p.add_argument("--n", type=int, default=1000, help="number of images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image size in pixels (square)")
    p.add_argument("--classes", choices=["multi", "binary"], default="multi",
                   help="multi: ok/ + one folder per defect kind; binary: ok/ and defect/")
    p.add_argument("--color", action="store_true", help="tinted BGR images instead of gray")
    p.add_argument("--ok-fraction", type=float, default=0.5, help="share of good parts")
    p.add_argument("--counts", default=None, metavar="CLASS=N,...",
                   help="imbalanced set instead of --n/--classes, e.g. ok=300,scratch=60,inclusion=20")
    p.add_argument("--sizes", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="with --counts: image sides drawn from MIN..MAX (default: --size)")
    args = p.parse_args(argv)
    if args.counts:
        try:
            counts = {k.strip(): int(v) for k, v in (item.split("=") for item in args.counts.split(","))}
            written = generate_counts(args.out, counts, seed=args.seed, sizes=tuple(args.sizes or (args.size, args.size)),
                                      color=args.color)
        except ValueError as e:
            p.error(f"--counts: {e} (expected CLASS=N,... with classes ok, {', '.join(DEFECT_KINDS)})")
        print(f"wrote {sum(written.values())} images to {args.out}: {written}")
        return 0
    if args.n < 1 or args.size < 16 or not 0.0 <= args.ok_fraction <= 1.0:
        p.error("need --n >= 1, --size >= 16 and 0 <= --ok-fraction <= 1")
    counts = generate(args.out, args.n, seed=args.seed, size=args.size, classes=args.classes, color=args.color,
                      ok_fraction=args.ok_fraction)
    print(f"wrote {sum(counts.values())} images to {args.out}: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

