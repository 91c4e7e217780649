"""Image-folder datasets for the CNN: load with the device's preprocess(), stratified split, augmentation.

Images go through smartstock.vision.preprocess (the same function the device runs), so training and
inference see identical pixels. Augmentation runs only in the training input pipeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from smartstock.errors import InputError
from smartstock.vision.images import default_defect_labels, read_image, scan_image_folder
from smartstock.vision.preprocess import InputSpec, preprocess

logger = logging.getLogger(__name__)


@dataclass
class Split:
    x: np.ndarray  # (N, H, W, C) uint8, already preprocessed
    y: np.ndarray  # (N,) int class index


@dataclass
class Dataset:
    labels: list[str]
    defect_labels: list[str]
    spec: InputSpec
    train: Split
    val: Split
    test: Split
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = {name: int((self.train.y == i).sum() + (self.val.y == i).sum() + (self.test.y == i).sum())
                  for i, name in enumerate(self.labels)}
        return (f"{sum(counts.values())} images {counts}; train {len(self.train.y)}, val {len(self.val.y)}, "
                f"test {len(self.test.y)}; input {self.spec.shape[1:]} {self.spec.color}")


def detect_color(images: list[np.ndarray]) -> str:
    """"gray" unless some image has channels that really differ (a colour camera imaging gray parts is gray)."""
    for img in images:
        if img.ndim == 3 and (np.abs(img[..., 0].astype(int) - img[..., 1]).mean() > 2
                              or np.abs(img[..., 1].astype(int) - img[..., 2]).mean() > 2):
            return "bgr"
    return "gray"


def stratified_split(y: np.ndarray, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    """Indices (train, val, test) with every class in every part (needs >= 3 images per class)."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[], [], []]
    for c in np.unique(y):
        idx = rng.permutation(np.where(y == c)[0])
        n_val = max(1, int(round(len(idx) * fractions[0])))
        n_test = max(1, int(round(len(idx) * fractions[1])))
        parts[1] += idx[:n_val].tolist()
        parts[2] += idx[n_val:n_val + n_test].tolist()
        parts[0] += idx[n_val + n_test:].tolist()
    return tuple(np.array(sorted(p), dtype=np.int64) for p in parts)


def auto_image_size(images: list[np.ndarray]) -> int:
    """Input size for a set: 96 px for part crops up to ~144 px, larger inputs for larger frames.

    A defect a few pixels wide on a 400 px part shrinks below one pixel at 96 px; 128/160 px keep it
    visible at 1.8x/2.8x the compute of 96 px (the FLOPs scale with the pixel count).
    """
    side = float(np.median([max(img.shape[:2]) for img in images])) if images else 96.0
    return 96 if side <= 144 else 128 if side <= 256 else 160


def load_dataset(root: Path, *, image_size: int | None = 96, color: str = "auto", val_fraction: float = 0.15,
                 test_fraction: float = 0.15, seed: int = 0, good_class: str | None = None,
                 no_good_class: bool = False, fit: str = "letterbox", min_image_size: int = 0) -> Dataset:
    """Read a class folder, preprocess every image, split stratified into train/val/test.

    `image_size=None` picks the size from the images (auto_image_size, at least `min_image_size`); `fit` is
    how frames of another aspect meet the square input (the device does the same: it is part of the manifest's input spec).
    """
    folder = scan_image_folder(root)
    defect_labels = default_defect_labels(folder.labels, good_class, no_good_class=no_good_class)
    counts = folder.counts()
    few = {k: v for k, v in counts.items() if v < 3}
    if few:
        raise InputError(f"{root}: class folder(s) with fewer than 3 images: {few}",
                         hint="every class needs images for training, validation and test (dozens at least)")
    images, ys, skipped = [], [], []
    for path, y in folder.files:
        try:
            images.append(read_image(path))
            ys.append(y)
        except InputError as e:
            skipped.append(str(e))
            logger.warning("skipped %s", e)
    if color == "auto":
        color = detect_color(images)
    if image_size is None:
        image_size = max(auto_image_size(images), min_image_size)
        logger.info("input size %d px chosen from the images (median longest side, at least %d)", image_size,
                    min_image_size)
    spec = InputSpec(shape=[-1, image_size, image_size, 1 if color == "gray" else 3], color=color, fit=fit)
    x = np.stack([preprocess(img, spec).astype(np.uint8) for img in images])
    y = np.array(ys, dtype=np.int64)
    missing = [folder.labels[i] for i in range(len(folder.labels)) if not (y == i).any()]
    if missing:
        raise InputError(f"{root}: no readable images in class folder(s) {missing}")
    tr, va, te = stratified_split(y, (val_fraction, test_fraction), seed)
    return Dataset(folder.labels, defect_labels, spec, Split(x[tr], y[tr]), Split(x[va], y[va]), Split(x[te], y[te]),
                   skipped)


def class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * n_c), so a rare defect class counts as much as the common good class."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    return {i: float(len(y) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


def balanced_indices(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One epoch of indices in which every class appears as often as the largest one (rare classes are
    repeated, each image as evenly as possible), shuffled. A 22-image class then fills as many batches
    as the 600-image good class instead of a weight on a handful of gradient steps."""
    classes, counts = np.unique(y, return_counts=True)
    target = int(counts.max())
    parts = []
    for c in classes:
        idx = rng.permutation(np.where(y == c)[0])
        parts.append(np.concatenate([np.tile(idx, target // len(idx)), idx[:target % len(idx)]]))
    return rng.permutation(np.concatenate(parts))


def make_augmenter(seed: int, *, flip: bool = True, rotate_deg: float = 10.0):
    """Batch augmentation for parts on a line: flips (when the part has no handedness), small rotations
    and shifts, brightness/contrast, blur, noise."""
    import keras
    import tensorflow as tf

    rotate = keras.layers.RandomRotation(rotate_deg / 360.0, fill_mode="reflect", seed=seed)
    shift = keras.layers.RandomTranslation(0.05, 0.05, fill_mode="reflect", seed=seed + 1)
    blur_k = tf.constant(np.outer([1, 2, 1], [1, 2, 1]) / 16.0, tf.float32)[:, :, None, None]

    def augment(x, y):
        x = tf.cast(x, tf.float32)
        n = tf.shape(x)[0]
        c = x.shape[-1]
        if flip:
            x = tf.image.random_flip_left_right(x)
            x = tf.image.random_flip_up_down(x)
        x = shift(rotate(x, training=True), training=True)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast = tf.random.uniform([n, 1, 1, 1], 0.8, 1.2)
        bright = tf.random.uniform([n, 1, 1, 1], -20.0, 20.0)
        x = (x - mean) * contrast + mean + bright
        blurred = tf.nn.depthwise_conv2d(x, tf.tile(blur_k, [1, 1, c, 1]), [1, 1, 1, 1], "SAME")
        x = tf.where(tf.random.uniform([n, 1, 1, 1]) < 0.25, blurred, x)
        x = x + tf.random.normal(tf.shape(x)) * tf.random.uniform([n, 1, 1, 1], 0.0, 4.0)
        return tf.clip_by_value(x, 0.0, 255.0), y

    return augment


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Image batch (N, H, W, C) in orientation k of the square's symmetry group: k % 4 quarter turns, then a
    left-right mirror when k >= 4 (k = 0 is the batch as is). Exact (no interpolation, no border fill),
    for parts with no handedness and no up (PCB layouts, surface tiles)."""
    x = np.rot90(x, k % 4, axes=(1, 2))
    return np.ascontiguousarray(x[:, :, ::-1] if k % 8 >= 4 else x)


MIN_STEPS_PER_EPOCH = 25  # BatchNorm's moving averages (momentum 0.9) need ~20 steps to follow the weights


def epoch_indices(y: np.ndarray, rng: np.random.Generator, min_size: int) -> np.ndarray:
    """Balanced draws (balanced_indices) joined until there are at least `min_size` indices.

    On a 160-image set an epoch was 4 steps: training accuracy reached 0.9 while the validation score
    stayed at chance for 12 epochs, because the BatchNorm moving statistics used at inference lagged
    far behind; with at least 25 steps per epoch early stopping judges what the model has learned.
    """
    parts = [balanced_indices(y, rng)]
    while sum(len(p) for p in parts) < min_size:
        parts.append(balanced_indices(y, rng))
    return np.concatenate(parts)


def epoch_size(y: np.ndarray, batch_size: int) -> int:
    return len(epoch_indices(y, np.random.default_rng(0), MIN_STEPS_PER_EPOCH * batch_size))


def tf_dataset(split: Split, batch_size: int, *, augment: bool, seed: int, balanced: bool = False,
               flip: bool = True):
    """Batches of float32 images (or cached backbone features, any dtype); `balanced` draws every class
    equally often per epoch (balanced_indices),
    at least MIN_STEPS_PER_EPOCH batches."""
    import tensorflow as tf

    if balanced:
        rng = np.random.default_rng(seed)
        n = epoch_size(split.y, batch_size)

        def gen():
            for i in epoch_indices(split.y, rng, n)[:n]:  # a fresh draw each epoch, always n long
                yield split.x[i], split.y[i]

        ds = tf.data.Dataset.from_generator(gen, output_signature=(
            tf.TensorSpec(split.x.shape[1:], tf.as_dtype(split.x.dtype)), tf.TensorSpec((), tf.int64)))
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
    else:
        ds = tf.data.Dataset.from_tensor_slices((split.x, split.y))
        if augment:
            ds = ds.shuffle(len(split.y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(make_augmenter(seed, flip=flip) if augment else (lambda x, y: (tf.cast(x, tf.float32), y)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
