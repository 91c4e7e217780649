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


def load_dataset(root: Path, *, image_size: int = 96, color: str = "auto", val_fraction: float = 0.15,
                 test_fraction: float = 0.15, seed: int = 0) -> Dataset:
    """Read a class folder, preprocess every image, split stratified into train/val/test."""
    folder = scan_image_folder(root)
    defect_labels = default_defect_labels(folder.labels)
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
    spec = InputSpec(shape=[-1, image_size, image_size, 1 if color == "gray" else 3], color=color)
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


def make_augmenter(seed: int):
    """Batch augmentation for parts on a line: flips, small rotations, brightness/contrast, blur, noise."""
    import keras
    import tensorflow as tf

    rotate = keras.layers.RandomRotation(0.03, fill_mode="reflect", seed=seed)
    blur_k = tf.constant(np.outer([1, 2, 1], [1, 2, 1]) / 16.0, tf.float32)[:, :, None, None]

    def augment(x, y):
        x = tf.cast(x, tf.float32)
        n = tf.shape(x)[0]
        c = x.shape[-1]
        x = tf.image.random_flip_left_right(x)
        x = tf.image.random_flip_up_down(x)
        x = rotate(x, training=True)
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        contrast = tf.random.uniform([n, 1, 1, 1], 0.8, 1.2)
        bright = tf.random.uniform([n, 1, 1, 1], -20.0, 20.0)
        x = (x - mean) * contrast + mean + bright
        blurred = tf.nn.depthwise_conv2d(x, tf.tile(blur_k, [1, 1, c, 1]), [1, 1, 1, 1], "SAME")
        x = tf.where(tf.random.uniform([n, 1, 1, 1]) < 0.25, blurred, x)
        x = x + tf.random.normal(tf.shape(x)) * tf.random.uniform([n, 1, 1, 1], 0.0, 4.0)
        return tf.clip_by_value(x, 0.0, 255.0), y

    return augment


def tf_dataset(split: Split, batch_size: int, *, augment: bool, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((split.x, split.y))
    if augment:
        ds = ds.shuffle(len(split.y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(make_augmenter(seed) if augment else (lambda x, y: (tf.cast(x, tf.float32), y)),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
