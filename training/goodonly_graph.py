"""ONNX graphs of the good-only detector, built on the frozen backbone (models/backbone).

`feature_model`: image -> locally aware patch features (N, P, D), PatchCore style: each chosen
block's output is averaged over its 3x3 neighbourhood, the deeper map is upsampled (bilinear) to
the grid of the shallower one, and the channels are concatenated. With `pad`, the image is first
mirrored outwards by that many pixels and the grid cropped back to the image, so a patch at the
edge sees mirrored board instead of the convolutions' zero padding (pcb_patches validation split:
ROC AUC 0.83 -> 0.91 on the raw distance, nothing once distances are rescaled per ring; README).
`detector_model`: the same plus the nearest-neighbour search against the memory bank, so the whole
detector is one ONNX file the device runs with ONNX Runtime alone:
  scores (N, 2)    [1 - s, s] with s = sigmoid((max patch distance - threshold) / scale)
  heatmap (N, h, w) the same squashing applied to every patch's distance (0.5 = on the threshold)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from training.backbone_export import BACKBONE_FILE, FEATURES

SCORES, HEATMAP, PATCHES = "scores", "heatmap", "patches"


def backbone_file() -> Path:
    """The shipped frozen backbone, or an error that says how to build it."""
    from smartstock import shipped
    from smartstock.errors import ModelError

    found = shipped.shipped_model("backbone", BACKBONE_FILE)
    if found is None:
        raise ModelError(f"backbone {BACKBONE_FILE} not found (looked in "
                         f"{', '.join(map(str, shipped.candidates('backbone', BACKBONE_FILE)))})",
                         hint="run `make backbone` (pip install 'smartstock[backbone]') in a checkout")
    return found


def grid_stride(layers: Sequence[str], patch_stride: int | None = None) -> int:
    """Stride of the patch grid: `patch_stride`, or that of the shallowest layer."""
    return patch_stride or min(FEATURES[name][1] for name in layers)


def grid_of(image_size: int, layers: Sequence[str], patch_stride: int | None = None) -> int:
    """Side of the patch grid (SAME padding: ceil(size / stride))."""
    return -(-image_size // grid_stride(layers, patch_stride))


def check_layers(image_size: int, layers: Sequence[str], patch_stride: int | None = None, border: int = 0,
                 pad: int = 0) -> None:
    from smartstock.errors import InputError

    unknown = [name for name in layers if name not in FEATURES]
    if unknown or not layers:
        raise InputError(f"unknown feature layer(s) {unknown or '(none)'}", hint=f"use some of {', '.join(FEATURES)}")
    if patch_stride not in (None, 4, 8, 16):
        raise InputError(f"patch stride {patch_stride} is not supported", hint="use 4, 8 or 16")
    stride = max([FEATURES[name][1] for name in layers] + [patch_stride or 0])
    if image_size % stride or not 32 <= image_size <= 640:
        raise InputError(f"--image-size {image_size} must be 32..640 and a multiple of {stride} (the stride of "
                         f"{'+'.join(layers)})", hint="use e.g. 96, 160 or 224")
    if pad < 0 or pad % stride or pad > image_size // 2:
        raise InputError(f"--mirror-pad {pad} must be a multiple of {stride} and at most half the image size",
                         hint="use 0 or 16")
    side = grid_of(image_size, layers, patch_stride)
    if not 0 <= border < side / 2:
        raise InputError(f"--border {border} leaves no patch of the {side}x{side} grid", hint="use 0, 1 or 2")


def _tensor(name: str, value: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(value), name)


def _prune(model, keep: Sequence[str]):
    """Drop the backbone nodes and outputs nothing in `keep` depends on (deeper blocks, unused maps)."""
    from onnx import helper

    g = model.graph
    needed, nodes = set(keep), []
    for node in reversed(list(g.node)):
        if any(o in needed for o in node.output):
            nodes.append(node)
            needed.update(node.input)
    nodes.reverse()
    inits = [t for t in g.initializer if t.name in needed]
    outs = [o for o in g.output if o.name in keep]
    graph = helper.make_graph(nodes, g.name, list(g.input), outs, inits)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="smartstock")
    out.ir_version = model.ir_version
    return out


def feature_model(layers: Sequence[str], image_size: int, backbone: Path | None = None,
                  patch_stride: int | None = None, pad: int = 0):
    """Backbone + patch-feature head: `image` (N, S, S, 3) BGR 0..255 -> `patches` (N, P, D).
    A layer finer than the grid by f is averaged over (2f+1)^2 neighbours at stride f, a coarser one upsampled.
    `pad` > 0: the image is mirrored outwards by `pad` pixels first and the grid cropped back to the image's."""
    import onnx
    from onnx import TensorProto, helper

    check_layers(image_size, layers, patch_stride, pad=pad)
    model = onnx.load(str(backbone or backbone_file()))
    g = model.graph
    base = grid_stride(layers, patch_stride)
    if pad:
        for node in g.node:
            node.input[:] = ["image_padded" if i == "image" else i for i in node.input]
        g.initializer.append(_tensor("image_pads", np.array([0, pad, pad, 0, 0, pad, pad, 0], np.int64)))
        g.node.insert(0, helper.make_node("Pad", ["image", "image_pads"], ["image_padded"], mode="reflect"))
    maps = []
    for name in layers:
        pooled = f"{name}_pool"
        f = max(1, base // FEATURES[name][1])
        g.node.append(helper.make_node("AveragePool", [name], [pooled], kernel_shape=[2 * f + 1] * 2, strides=[f, f],
                                       pads=[f] * 4, count_include_pad=0))
        factor = FEATURES[name][1] / base
        if factor > 1:
            g.initializer.append(_tensor(f"{name}_scales", np.array([1, 1, factor, factor], np.float32)))
            g.node.append(helper.make_node("Resize", [pooled, "", f"{name}_scales"], [f"{name}_up"], mode="linear",
                                           coordinate_transformation_mode="half_pixel"))
            pooled = f"{name}_up"
        maps.append(pooled)
    g.node.append(helper.make_node("Concat", maps, ["features_all"], axis=1))
    c, side = pad // base, grid_of(image_size, layers, patch_stride)
    g.initializer.extend([_tensor("crop_lo", np.array([c, c], np.int64)),
                          _tensor("crop_hi", np.array([c + side, c + side], np.int64)),
                          _tensor("crop_axes", np.array([2, 3], np.int64))])
    g.node.append(helper.make_node("Slice", ["features_all", "crop_lo", "crop_hi", "crop_axes"], ["features"]))
    g.initializer.append(_tensor("patch_shape", np.array([0, 0, -1], np.int64)))
    g.node.append(helper.make_node("Reshape", ["features", "patch_shape"], ["features_flat"]))
    g.node.append(helper.make_node("Transpose", ["features_flat"], [PATCHES], perm=[0, 2, 1]))
    g.output.append(helper.make_tensor_value_info(PATCHES, TensorProto.FLOAT, ["N", "P", "D"]))
    g.input[0].type.tensor_type.shape.dim[1].dim_value = image_size
    g.input[0].type.tensor_type.shape.dim[2].dim_value = image_size
    return _prune(model, [PATCHES])


def detector_model(layers: Sequence[str], image_size: int, bank: np.ndarray, threshold: float, scale: float,
                   backbone: Path | None = None, patch_stride: int | None = None, border: int = 0, *,
                   pad: int = 0, top_k: int = 1, position: tuple[np.ndarray, np.ndarray] | None = None,
                   neighbours: int = 1):
    """feature_model + nearest-neighbour distances to `bank` (K, D) -> `scores` (N, 2) and `heatmap`.
    A patch's distance is that to its nearest bank row, or the mean over its `neighbours` nearest.
    `position` (centre, spread) per patch rescales the distances (training.goodonly.position_stats);
    the image score is the mean of the `top_k` largest patch scores, `border` patch rows/columns at each
    edge left out (the heat map keeps them)."""
    from onnx import TensorProto, checker, helper

    model = feature_model(layers, image_size, backbone, patch_stride, pad=pad)
    g = model.graph
    side = grid_of(image_size, layers, patch_stride)
    check_layers(image_size, layers, patch_stride, border, pad)
    inner = (side - 2 * border) ** 2
    if not 1 <= top_k <= inner:
        from smartstock.errors import InputError

        raise InputError(f"top_k {top_k} must be 1..{inner} (patches scored)", hint="use 1 or 10")
    bank = np.asarray(bank, np.float32)
    # |p - m|^2 = |p|^2 + (-2 p.m + |m|^2): the bracket is one MatMul of [p, 1] with [-2 M^T; |m|^2], so
    # the (P x K) distance block is written once and read once (ReduceMin) instead of four times.
    bank_aug = np.concatenate([-2.0 * bank.T, (bank * bank).sum(1)[None, :]]).astype(np.float32)
    g.initializer.extend([
        _tensor("bank_aug", bank_aug), _tensor("zero_f", np.array(0, np.float32)),
        _tensor("threshold", np.array(threshold, np.float32)), _tensor("inv_scale", np.array(1 / scale, np.float32)),
        _tensor("one_f", np.array(1, np.float32)), _tensor("axis_last", np.array([-1], np.int64)),
        _tensor("heat_shape", np.array([0, side, side], np.int64)), _tensor("one_i", np.array([1], np.int64)),
        _tensor("zero_i", np.array([0], np.int64)), _tensor("two_i", np.array([2], np.int64)),
        _tensor("border_lo", np.array([border, border], np.int64)),
        _tensor("border_hi", np.array([side - border, side - border], np.int64)),
        _tensor("border_axes", np.array([1, 2], np.int64)),
    ])
    n = helper.make_node
    g.node.extend([
        n("Mul", [PATCHES, PATCHES], ["p_sq_each"]),
        n("ReduceSum", ["p_sq_each", "axis_last"], ["p_sq"], keepdims=0),            # (N, P)
        n("Shape", [PATCHES], ["p_shape"]),
        n("Slice", ["p_shape", "zero_i", "two_i"], ["np_shape"]),
        n("Concat", ["np_shape", "one_i"], ["ones_shape"], axis=0),
        n("ConstantOfShape", ["ones_shape"], ["ones"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        n("Concat", [PATCHES, "ones"], ["p_aug"], axis=-1),                          # (N, P, D + 1)
        n("MatMul", ["p_aug", "bank_aug"], ["d_part"]),                               # (N, P, K)
    ])
    k = min(neighbours, len(bank))
    if k == 1:
        g.node.extend([
            n("ReduceMin", ["d_part"], ["d_min"], axes=[-1], keepdims=0),             # (N, P) opset 13: axes attr
            n("Add", ["d_min", "p_sq"], ["d2"]),
            n("Max", ["d2", "zero_f"], ["d2_pos"]),
            n("Sqrt", ["d2_pos"], ["dist_raw"]),
        ])
    else:  # mean Euclidean distance to the k nearest bank rows (as training.goodonly.nn_distances)
        g.initializer.append(_tensor("neighbours", np.array([k], np.int64)))
        g.node.extend([
            n("TopK", ["d_part", "neighbours"], ["d_near", "d_near_i"], axis=-1, largest=0),  # (N, P, k)
            n("Unsqueeze", ["p_sq", "axis_last"], ["p_sq_1"]),
            n("Add", ["d_near", "p_sq_1"], ["d2"]),
            n("Max", ["d2", "zero_f"], ["d2_pos"]),
            n("Sqrt", ["d2_pos"], ["d_near_e"]),
            n("ReduceMean", ["d_near_e"], ["dist_raw"], axes=[-1], keepdims=0),
        ])
    if position is not None:  # rescaled by good parts at the same distance from the edge
        g.initializer.extend([_tensor("pos_mean", np.asarray(position[0], np.float32)),
                              _tensor("pos_inv_std", (1 / np.asarray(position[1], np.float64)).astype(np.float32))])
        g.node.extend([n("Sub", ["dist_raw", "pos_mean"], ["dist_c0"]), n("Mul", ["dist_c0", "pos_inv_std"], ["dist"])])
    else:
        g.node.append(n("Identity", ["dist_raw"], ["dist"]))
    g.node.extend([
        n("Sub", ["dist", "threshold"], ["dist_c"]),
        n("Mul", ["dist_c", "inv_scale"], ["dist_z"]),
        n("Sigmoid", ["dist_z"], ["patch_s"]),
        n("Reshape", ["patch_s", "heat_shape"], [HEATMAP]),
    ])
    if top_k == 1:
        g.node.extend([
            n("Slice", [HEATMAP, "border_lo", "border_hi", "border_axes"], ["inner"]),
            n("ReduceMax", ["inner"], ["s_flat"], axes=[1, 2], keepdims=0),           # (N,): sigmoid is monotone
        ])
    else:  # mean of the k largest patch scores, squashed after the mean (as training.goodonly.image_scores)
        g.initializer.extend([_tensor("top_k", np.array([top_k], np.int64)),
                              _tensor("flat_shape", np.array([0, -1], np.int64))])
        g.node.extend([
            n("Reshape", ["dist", "heat_shape"], ["dist_map"]),
            n("Slice", ["dist_map", "border_lo", "border_hi", "border_axes"], ["dist_inner"]),
            n("Reshape", ["dist_inner", "flat_shape"], ["dist_flat"]),
            n("TopK", ["dist_flat", "top_k"], ["top_v", "top_i"], axis=-1),
            n("ReduceMean", ["top_v"], ["top_mean"], axes=[1], keepdims=0),
            n("Sub", ["top_mean", "threshold"], ["top_c"]),
            n("Mul", ["top_c", "inv_scale"], ["top_z"]),
            n("Sigmoid", ["top_z"], ["s_flat"]),
        ])
    g.node.extend([
        n("Unsqueeze", ["s_flat", "axis_last"], ["s"]),                               # (N, 1)
        n("Sub", ["one_f", "s"], ["ok_s"]),
        n("Concat", ["ok_s", "s"], [SCORES], axis=1),
    ])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, ["N", 2]),
                     helper.make_tensor_value_info(HEATMAP, TensorProto.FLOAT, ["N", side, side])])
    checker.check_model(model)
    return model
