"""`smartstock train cnn|lstm` and `smartstock eval cnn`: TensorFlow is imported only when these run."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from smartstock.errors import BackendUnavailable


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train and export models (needs the 'train' extra)")
    tsub = train.add_subparsers(dest="train_command", metavar="MODEL", required=True)

    cnn = tsub.add_parser("cnn", help="train the defect classifier on an image folder (one subfolder per class)")
    cnn.add_argument("--data", type=Path, required=True, help="folder with one subfolder of images per class")
    cnn.add_argument("--out", type=Path, required=True, help="output folder for the models, manifest and evaluation")
    cnn.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping may end sooner)")
    cnn.add_argument("--image-size", type=int, default=None, help="square input size in pixels")
    cnn.add_argument("--seed", type=int, default=0)
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

    ev = sub.add_parser("eval", help="evaluate an exported model")
    esub = ev.add_subparsers(dest="eval_command", metavar="MODEL", required=True)
    ecnn = esub.add_parser("cnn", help="evaluate a .onnx/.tflite defect model on a folder with class subfolders")
    ecnn.add_argument("--model", type=Path, required=True)
    ecnn.add_argument("--data", type=Path, required=True)
    ecnn.add_argument("--json", action="store_true", help="print JSON instead of text")
    ecnn.add_argument("--backend", choices=["auto", "onnx", "tflite"], default="auto")
    ecnn.set_defaults(func=_lazy("smartstock.vision.evaluate_cli"))


def _lazy(module: str):
    """Handler that imports `module` only when the command runs and calls its `run(args)`."""

    def handler(args: argparse.Namespace) -> int:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "onnx"):
                raise BackendUnavailable(f"training needs TensorFlow ({e.name} is not installed)",
                                         hint="pip install 'smartstock[train]' on a workstation; devices do not train") from None
            raise
        return int(mod.run(args) or 0)

    return handler
