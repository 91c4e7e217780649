"""`smartstock eval cnn`: evaluate an exported defect model on a labelled image folder (no TensorFlow)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate an exported model")
    esub = ev.add_subparsers(dest="eval_command", metavar="MODEL", required=True)
    ecnn = esub.add_parser("cnn", help="evaluate a .onnx/.tflite defect model on a folder with class subfolders")
    ecnn.add_argument("--model", type=Path, required=True)
    ecnn.add_argument("--data", type=Path, required=True)
    ecnn.add_argument("--json", action="store_true", help="print JSON instead of text")
    ecnn.add_argument("--backend", choices=["auto", "onnx", "tflite"], default="auto")
    ecnn.set_defaults(func=_eval_cnn)


def _eval_cnn(args: argparse.Namespace) -> int:
    from smartstock.vision.evaluate_cli import run

    return int(run(args) or 0)
