"""The compact defect CNN: MobileNet-style depthwise-separable blocks, normalisation inside the model.

Default 96x96 gray, width 1.0: a full 3x3 stem, then depthwise-separable stages separated by max pooling;
about 50 k parameters and ~15 M multiply-adds, a few ms per frame on a Raspberry Pi 4 core. BatchNorm momentum 0.9 (the 0.99 default made small from-scratch sets predict one
class). An ImageNet MobileNetV2 backbone can be used instead, only from a local weights file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
from keras import layers

from smartstock.errors import InputError

logger = logging.getLogger(__name__)

BN_MOMENTUM = 0.9
# Depthwise-separable stages (output channels, blocks); each stage ends with 2x2 max pooling. Max pooling
# (not strided convolutions) keeps the response of a 1-2 pixel scratch or speck when downsampling; with
# strided depthwise convs the same net generalised at chance level on small synthetic sets.
STAGES = ((32, 1), (64, 2), (128, 2), (128, 1))


def _ch(c: int, alpha: float) -> int:
    return max(8, int(round(c * alpha / 8)) * 8)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x)


def _ds_block(x, filters: int, stride: int, name: str):
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    return _conv_bn(x, filters, 1, 1, f"{name}_pw")


def build_model(image_size: int, channels: int, n_classes: int, *, alpha: float = 1.0, dropout: float = 0.2,
                backbone_weights: Path | None = None) -> keras.Model:
    """Input: float32 0..255 (N, S, S, C), as preprocess() gives; output: softmax over the classes."""
    inputs = keras.Input(shape=(image_size, image_size, channels), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(inputs)
    if backbone_weights is not None:
        x = _imagenet_backbone(x, image_size, channels, backbone_weights)
    else:
        x = _conv_bn(x, _ch(16, alpha), 3, 1, "stem")
        x = layers.MaxPooling2D(2, name="stem_pool")(x)
        for i, (c, n) in enumerate(STAGES):
            for j in range(n):
                x = _ds_block(x, _ch(c, alpha), 1, f"stage{i + 1}_{j + 1}")
            if i < len(STAGES) - 1:
                x = layers.MaxPooling2D(2, name=f"stage{i + 1}_pool")(x)
    # Max pooling answers "is there a defect anywhere"; average pooling alone dilutes a small defect.
    x = layers.Concatenate(name="pool")([layers.GlobalAveragePooling2D(name="avg_pool")(x),
                                         layers.GlobalMaxPooling2D(name="max_pool")(x)])
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="scores")(x)
    return keras.Model(inputs, outputs, name="defect_cnn")


def _imagenet_backbone(x, image_size: int, channels: int, weights: Path):
    """MobileNetV2 features initialised from a LOCAL weights file (nothing is ever downloaded)."""
    weights = Path(weights)
    if not weights.is_file():
        raise InputError(f"{weights}: backbone weights file not found",
                         hint="copy MobileNetV2 no-top ImageNet weights (.h5) to the machine; nothing is downloaded")
    if image_size < 32:
        raise InputError(f"image size {image_size} is too small for the MobileNetV2 backbone (>= 32)")
    if channels == 1:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    base = keras.applications.MobileNetV2(input_shape=(image_size, image_size, 3), include_top=False,
                                          weights=str(weights), alpha=1.0)
    return base(x)


def count_flops(model: keras.Model) -> int:
    """Multiply-adds x 2 of the conv/dense layers for one image (the figure benchmarks compare with peak)."""
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a wrapped model (transfer.with_test_time_views): per view x views
            flops += count_flops(layer) * int(getattr(model, "views", 1))
            continue
        out = getattr(layer, "output", None)
        if out is None:
            continue
        shape = tuple(out.shape)
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            flops += 2 * shape[1] * shape[2] * shape[3] * kh * kw
        elif isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            flops += 2 * shape[1] * shape[2] * shape[3] * kh * kw * cin
        elif isinstance(layer, layers.Dense):
            flops += 2 * layer.input.shape[-1] * shape[-1]
    return int(flops)
