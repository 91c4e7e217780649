"""Good-parts-only detection: PatchCore-style nearest-neighbour scores on frozen ImageNet features.

Training needs images of good parts only. Their patch features (training.goodonly_graph) fill a
memory bank (a greedy coreset, or a random subsample), optionally from the good images in all
eight orientations (`augment="d4"`: parts lie on the line in any orientation). A patch's distance
is that to the nearest bank entry; with `position_norm` it is then rescaled by what good parts show
at the same distance from the image edge (the "ring": edge patches, cut by the crop, are far from the
bank even on good parts): 0 at their median, 1 at their 99th percentile. A part's anomaly score is the
mean of its `top_k` largest patch scores (1 = the largest), and the heat map is the patch score.
The threshold comes from held-out good images, scored without their own ring statistics (cross-fitted:
each fold's scores use the statistics of the other folds), at the conformal order statistic, so that the
expected share of unseen good parts flagged is at most the false-alarm rate (calibrate).
Everything runs with ONNX Runtime and numpy: no TensorFlow, no PyTorch, here or on the device.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from smartstock.errors import InputError
from smartstock.vision.preprocess import InputSpec, preprocess_batch

logger = logging.getLogger(__name__)

BATCH = 16
NN_CHUNK = 4096  # bank rows per distance block: bounds the (patches x chunk) matrix


@dataclass
class GoodOnlyRecipe:
    # Defaults chosen on the validation split of `python -m benchmarks goodonly` (pcb_patches, split by source
    # image, 300 good to build from; README has the whole table): block2 + block4 on the stride-8 grid
    # (block4+block10, block3+block5, block2+3+4, stride 4 and a random bank were worse), scored as the mean
    # of the 3 largest patch distances rescaled per ring (validation ROC AUC 0.833 -> 0.969 / 0.963 for
    # coreset seeds 0 / 1 at 160 px), at 128 px (0.977 / 0.970, and 36% fewer pixels). Mirroring the image
    # 16 px outwards helps the raw distance (0.833 -> 0.914) but not the rescaled one and costs 20% more per
    # part; a 10,000-patch bank, the 8 orientations in the bank, whitened features, a second input scale
    # and PaDiM gave no more on validation (or less) for their cost.
    image_size: int = 128
    layers: tuple[str, ...] = ("block2", "block4")
    bank_size: int = 3_000           # patches kept in the memory bank (search cost grows with it)
    patch_stride: int | None = 8     # grid of the patches; None = the shallowest layer's stride
    border: int = 0                  # patch rows/columns at each image edge left out of the score (README)
    pad: int = 0                     # input pixels mirrored outwards at each edge before the backbone
    top_k: int = 3                   # image score = mean of the k largest patch scores
    # Patch distance = mean distance to its k nearest bank patches. 3 instead of the nearest alone: validation
    # ROC AUC 0.971 -> 0.979 (a random 20% held out), 0.972 -> 0.975 (20% held out by source picture; spread over
    # 4 coreset seeds and splits 0.0063 -> 0.0037), 0.968 -> 0.974 (33% by source); 5 was no better; +0.4 ms.
    neighbours: int = 3
    position_norm: bool = True       # patch distance rescaled by good parts' median / 99th pct. at its ring
    augment: str = "none"            # none | d4: bank from the good images in all 8 orientations
    sampler: str = "coreset"         # coreset | random
    coreset_dims: int = 64           # random projection used only to pick the coreset
    coreset_candidates: int = 100_000  # random patches the coreset is picked from (its cost is k x this)
    calibration_fraction: float = 0.2  # held-out good images for the threshold
    false_alarm_rate: float = 0.01
    threads: int = 2
    seed: int = 0
    model_id: str = "goodonly-patchcore"
    release: int = 1
    description: str = ""

    def spec(self) -> InputSpec:
        return InputSpec(shape=[-1, self.image_size, self.image_size, 3], color="bgr", resize="area")


class PatchFeatures:
    """The feature graph loaded in ONNX Runtime: frames -> patch features (N, P, D)."""

    def __init__(self, recipe: GoodOnlyRecipe, backbone: Path | None = None) -> None:
        import onnxruntime as ort

        from training.goodonly_graph import feature_model

        self.recipe = recipe
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = recipe.threads
        opts.log_severity_level = 3
        proto = feature_model(recipe.layers, recipe.image_size, backbone, recipe.patch_stride,
                              pad=recipe.pad).SerializeToString()
        self.session = ort.InferenceSession(proto, opts, providers=["CPUExecutionProvider"])

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        spec = self.recipe.spec()
        out = [self.session.run(None, {"image": preprocess_batch(frames[i:i + BATCH], spec).astype(np.float32)})[0]
               for i in range(0, len(frames), BATCH)]
        return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)


def random_subsample(feats: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(len(feats), size=min(k, len(feats)), replace=False))


def greedy_coreset(feats: np.ndarray, k: int, rng: np.random.Generator, dims: int = 64) -> np.ndarray:
    """Indices of a k-centre greedy coreset (PatchCore): each step adds the patch farthest from those
    already picked, measured in a random projection to `dims` dimensions (the choice, not the bank)."""
    n = len(feats)
    if k >= n:
        return np.arange(n)
    proj = rng.normal(size=(feats.shape[1], dims)).astype(np.float32) / np.sqrt(dims)
    z = feats @ proj
    z_sq = np.einsum("ij,ij->i", z, z)
    picked = np.empty(k, np.int64)
    picked[0] = rng.integers(n)
    nearest = np.full(n, np.inf, np.float32)
    for i in range(1, k + 1):
        c = picked[i - 1]
        np.minimum(nearest, z_sq - 2 * (z @ z[c]) + z_sq[c], out=nearest)
        if i < k:
            picked[i] = int(np.argmax(nearest))
    return np.sort(picked)


def nn_distances(patches: np.ndarray, bank: np.ndarray, neighbours: int = 1) -> np.ndarray:
    """(N, P, D) patches -> (N, P) Euclidean distance to the nearest bank row, or the mean distance to the
    `neighbours` nearest ones; the detector graph's formula."""
    n, p, d = patches.shape
    flat = patches.reshape(-1, d)
    k = min(neighbours, len(bank))
    best = np.full((len(flat), k), np.inf, np.float32)
    for start in range(0, len(bank), NN_CHUNK):
        b = bank[start:start + NN_CHUNK]
        part = (b * b).sum(1)[None, :] - 2 * (flat @ b.T)
        if k == 1:
            np.minimum(best[:, 0], part.min(1), out=best[:, 0])
        else:
            both = np.concatenate([best, part], 1)
            best = np.partition(both, k - 1, axis=1)[:, :k]
    d2 = best + (flat * flat).sum(1)[:, None]
    return np.sqrt(np.maximum(d2, 0)).mean(1).reshape(n, p)


def rings(side: int) -> np.ndarray:
    """(side * side,) ring index of each grid cell: 0 at the edge, growing inwards."""
    i = np.arange(side)
    r = np.minimum(i, side - 1 - i)
    return np.minimum(r[:, None], r[None, :]).ravel()


#: Quantile of good parts' patch distances that position_norm maps to 1 (the median maps to 0). Mean and
#: standard deviation instead swung with the coreset's seed (pcb validation ROC AUC 0.95 / 0.86 / 0.84 for
#: seeds 0-2, heavy tails), the median and 99th percentile did not (0.967 / 0.965 / 0.965).
POSITION_QUANTILE = 0.99


def position_stats(d: np.ndarray, floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch (centre, spread) of good parts' distances (N, P), pooled over each ring of the grid: the
    median and the distance from it to the POSITION_QUANTILE. Per patch, not per ring maximum, so a ring's
    number of cells does not weigh in (a larger ring would otherwise count as more forgiving)."""
    rg = rings(int(round(np.sqrt(d.shape[1]))))
    centre, spread = np.empty(d.shape[1], np.float32), np.empty(d.shape[1], np.float32)
    for r in np.unique(rg):
        v = d[:, rg == r]
        med = float(np.median(v))
        centre[rg == r] = med
        spread[rg == r] = max(float(np.quantile(v, POSITION_QUANTILE)) - med, floor * max(med, 1.0))
    return centre, spread


def image_scores(d: np.ndarray, border: int = 0, top_k: int = 1) -> np.ndarray:
    """(N, P) patch scores -> (N,) image scores: mean of the top_k largest, `border` cells in from each edge."""
    side = int(round(np.sqrt(d.shape[1])))
    inner = d.reshape(len(d), side, side)[:, border:side - border, border:side - border].reshape(len(d), -1)
    return np.sort(inner, 1)[:, -top_k:].mean(1)


def oriented(frames: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """The frames turned by k * 90 degrees, mirrored when k >= 4 (k in 0..7: the eight orientations)."""
    out = []
    for f in frames:
        t = np.rot90(f, k % 4)
        out.append(np.ascontiguousarray(t[:, ::-1] if k >= 4 else t))
    return out


#: Folds of the held-out good images when the ring statistics are cross-fitted (fit): each image's score
#: uses statistics from the other folds, never its own patches. Scored with their own statistics, the
#: held-out images looked tamer than unseen ones (each image pulls the 99th percentile towards itself):
#: on pcb_patches the threshold for 1% flagged 1.0-2.7% of the test split's good parts.
CROSS_FOLDS = 5
#: Confidence of the upper bound on the false-alarm rate reported with the threshold.
BOUND_CONFIDENCE = 0.9


@dataclass
class Calibration:
    threshold: float      # raw image score that marks a defect
    scale: float          # spread of good scores: the sigmoid's width
    false_alarm_rate: float  # on the calibration images at that threshold
    images: int
    expected_false_alarm_rate: float = 0.0  # on unseen good parts, in expectation: (above + 1) / (images + 1)
    false_alarm_bound: float = 1.0  # ... at most this with BOUND_CONFIDENCE (Clopper-Pearson on the order statistic)
    enough: bool = True   # False when `images` cannot reach the target even in expectation (warned)


def binomial_tail(n: int, m: int, p: float) -> float:
    """P(Binomial(n, p) >= m)."""
    if m <= 0 or p >= 1:
        return 1.0
    if p <= 0:
        return 0.0
    lp, lq, lg = math.log(p), math.log1p(-p), math.lgamma(n + 1)

    def pmf(i: int) -> float:
        return math.exp(lg - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)

    if m <= n // 2:  # the shorter sum: 1 - P(X < m)
        return float(min(1.0, max(0.0, 1.0 - sum(pmf(i) for i in range(m)))))
    return float(min(1.0, sum(pmf(i) for i in range(m, n + 1))))


def false_alarm_bound(n: int, above: int, confidence: float = BOUND_CONFIDENCE) -> float:
    """Upper bound u on the false-alarm rate of a threshold just above the (n - above)-th smallest of n good
    scores, holding with `confidence`: the rate is Beta(above + 1, n - above) distributed for exchangeable
    scores, and P(rate <= u) = P(Binomial(n, u) >= above + 1)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if binomial_tail(n, above + 1, mid) >= confidence else (mid, hi)
    return hi


def images_needed(false_alarm_rate: float) -> int:
    """Fewest held-out good images whose conformal threshold can meet the rate in expectation: 1 / rate - 1."""
    return int(math.ceil(1 / false_alarm_rate - 1 - 1e-9))


def calibrate(good_scores: np.ndarray, false_alarm_rate: float) -> Calibration:
    """Threshold just above the k-th smallest good score, k = ceil((1 - rate) (n + 1)) (the conformal
    quantile), so that score >= threshold (the device's rule) flags an unseen good part with probability
    (n - k + 1) / (n + 1) <= rate when it scores like the held-out ones. The plain (1 - rate) quantile of the
    n scores flags about one more in n. Fewer than 1 / rate - 1 images cannot reach the rate: the threshold
    then sits just above the highest good score and a warning says what to expect and how many images to give."""
    s = np.sort(np.asarray(good_scores, np.float64))
    n = len(s)
    if n < 2:
        raise InputError(f"only {n} held-out good image(s) to calibrate the threshold",
                         hint="give at least 10 good images (better 1 / false-alarm-rate)")
    scale = float(max(np.std(s), 1e-3 * max(abs(s[-1]), 1.0)))
    k = min(n, int(math.ceil((1 - false_alarm_rate) * (n + 1) - 1e-9)))   # 1-based order statistic
    t = float((s[k - 1] + s[k]) / 2 if k < n else s[-1] + 0.05 * scale)
    above = n - k
    cal = Calibration(t, scale, float(np.mean(s >= t)), n, (above + 1) / (n + 1), false_alarm_bound(n, above),
                      enough=(above + 1) / (n + 1) <= false_alarm_rate + 1e-12)
    if not cal.enough:
        logger.warning("too few good images for the threshold: %d held-out good images cannot resolve a %.2g "
                       "false-alarm rate (threshold just above the highest good score: expect about %.1f%% false "
                       "alarms, up to %.1f%% with %d%% confidence); give at least %d held-out good images",
                       n, false_alarm_rate, 100 * cal.expected_false_alarm_rate, 100 * cal.false_alarm_bound,
                       round(100 * BOUND_CONFIDENCE), images_needed(false_alarm_rate))
    return cal


def cross_fitted_scores(d: np.ndarray, border: int, top_k: int, folds: int = CROSS_FOLDS,
                        seed: int = 0, groups: Sequence[str] | None = None) -> np.ndarray:
    """(N, P) raw patch distances of held-out good images -> (N,) image scores, each image rescaled by ring
    statistics of the other folds only (as an unseen part is by statistics that never saw it). `groups`:
    each image's source picture; a source's crops share a fold, so no crop is scored by its twins' statistics."""
    n = len(d)
    if groups is not None and len(groups) == n:
        keys = sorted(set(groups))
        perm = np.random.default_rng(seed).permutation(len(keys)) % min(folds, len(keys))
        of_key = dict(zip(keys, perm))
        fold = np.array([of_key[g] for g in groups])
    else:
        fold = np.random.default_rng(seed).permutation(n) % min(folds, n)
    out = np.empty(n, np.float64)
    for f in np.unique(fold):
        centre, spread = position_stats(d[fold != f])
        out[fold == f] = image_scores((d[fold == f] - centre) / spread, border, top_k)
    return out


def calibrate_distances(d: np.ndarray, recipe: GoodOnlyRecipe, groups: Sequence[str] | None = None
                        ) -> tuple[tuple[np.ndarray, np.ndarray] | None, Calibration]:
    """Held-out good images' raw patch distances (N, P) -> (ring statistics the device uses, from all N, or
    None without position_norm; the threshold, from scores that never saw their own image's statistics)."""
    if not recipe.position_norm:
        return None, calibrate(image_scores(d, recipe.border, recipe.top_k), recipe.false_alarm_rate)
    scores = cross_fitted_scores(d, recipe.border, recipe.top_k, seed=recipe.seed, groups=groups)
    return position_stats(d), calibrate(scores, recipe.false_alarm_rate)


@dataclass
class GoodOnlyModel:
    recipe: GoodOnlyRecipe
    bank: np.ndarray
    calibration: Calibration
    timings: dict[str, float]
    position: tuple[np.ndarray, np.ndarray] | None = None  # (centre, spread) per patch when recipe.position_norm
    calib_groups: list[str] | None = None  # source picture of each calibration image (cross-fitting folds)

    def raw_scores(self, feats: PatchFeatures, frames: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(image scores (N,), patch scores (N, P)) computed in numpy, for evaluation and parity."""
        d = patch_distances(feats, self.bank, frames, self.recipe.neighbours)
        if self.position is not None:
            d = (d - self.position[0]) / self.position[1]
        return image_scores(d, self.recipe.border, self.recipe.top_k), d


def patch_distances(feats: PatchFeatures, bank: np.ndarray, frames: Sequence[np.ndarray],
                    neighbours: int = 1) -> np.ndarray:
    """(N, P) distance of each patch to its nearest bank row (mean over the `neighbours` nearest)."""
    return np.concatenate([nn_distances(feats(frames[i:i + BATCH]), bank, neighbours)
                           for i in range(0, len(frames), BATCH)])


def fit(train: Sequence[np.ndarray], calib: Sequence[np.ndarray], recipe: GoodOnlyRecipe,
        feats: PatchFeatures | None = None, calib_groups: Sequence[str] | None = None) -> GoodOnlyModel:
    """Memory bank from `train`, threshold from `calib` (both good parts only; `calib_groups`: the source
    picture of each calib image, so the cross-fitting keeps a source's crops in one fold)."""
    if recipe.sampler not in ("coreset", "random"):
        raise InputError(f"unknown sampler {recipe.sampler!r}", hint="use coreset or random")
    if recipe.augment not in ("none", "d4"):
        raise InputError(f"unknown augmentation {recipe.augment!r}", hint="use none or d4")
    feats = feats or PatchFeatures(recipe)
    rng = np.random.default_rng(recipe.seed)
    t0 = time.perf_counter()
    turns = 8 if recipe.augment == "d4" else 1
    parts = []
    for k in range(turns):  # each orientation keeps an equal share of the candidates: memory stays bounded
        p = feats(oriented(train, k) if k else train)
        p = p.reshape(-1, p.shape[-1])
        if turns > 1 and recipe.sampler == "coreset":
            p = p[random_subsample(p, -(-recipe.coreset_candidates // turns), rng)]
        parts.append(p)
    all_patches = np.concatenate(parts)
    t1 = time.perf_counter()
    if recipe.sampler == "coreset":
        pool = random_subsample(all_patches, recipe.coreset_candidates, rng)
        pick = pool[greedy_coreset(all_patches[pool], recipe.bank_size, rng, recipe.coreset_dims)]
    else:
        pick = random_subsample(all_patches, recipe.bank_size, rng)
    bank = np.ascontiguousarray(all_patches[pick])
    t2 = time.perf_counter()
    position, calibration = calibrate_distances(patch_distances(feats, bank, calib, recipe.neighbours), recipe,
                                                calib_groups)
    model = GoodOnlyModel(recipe, bank, calibration, {"features_s": t1 - t0, "bank_s": t2 - t1,
                                                      "calibration_s": time.perf_counter() - t2,
                                                      "patches": float(len(all_patches))}, position,
                          list(calib_groups) if calib_groups is not None else None)
    logger.info("good-only: %d patches from %d images, bank %d (%s) in %.1fs, threshold %.4g on %d held-out images",
                len(all_patches), len(train), len(bank), recipe.sampler, t2 - t1, calibration.threshold,
                len(calib))
    return model
