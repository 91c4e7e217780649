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
    cnn.add_argument("--data", type=Path, required=True, help="folder with one subfolder of images per class")
    cnn.add_argument("--out", type=Path, required=True, help="output folder for the models, manifest and evaluation")
    cnn.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping may end sooner)")
    cnn.add_argument("--image-size", type=int, default=None, help="square input size in pixels")
    cnn.add_argument("--seed", type=int, default=0)
    cnn.add_argument("--false-alarm-rate", type=float, default=None,
                     help="good-only folders (only ok/): share of good parts the calibrated threshold may flag "
                          "(default 0.01)")
    cnn.add_argument("--border", type=int, default=None,
                     help="good-only folders: patch rows/columns at each image edge left out of the score (default 0)")
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


def _lazy(module: str):
    """Handler that imports `module` only when the command runs and calls its `run(args)`.
    A missing TensorFlow is reported by the CLI host as the `train` extra to install."""

    def handler(args: argparse.Namespace) -> int:
        return int(importlib.import_module(module).run(args) or 0)

    return handler
