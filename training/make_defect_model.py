"""Rebuild the shipped demo defect model: `python -m training.make_defect_model --out models/defect`.

Generates the synthetic set (training/synth.py), trains with the default recipe, exports ONNX + TFLite
float32 + TFLite int8 with manifest.json and evaluation.json, scores the export on a second synthetic set
drawn with another seed, and writes a README.md that says plainly this is a demo model.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from training.cnn_cli import TrainRecipe, train_and_export
from training.synth import generate

logger = logging.getLogger(__name__)

N_TRAIN = 4000
N_CHECK = 2000
SYNTH_SIZE = 128
TRAIN_SEED = 0
CHECK_SEED = 1000

README = """# Default defect model (DEMO ONLY)

**This is a demonstration model trained on synthetic images** (`training/synth.py`: textured metal
surfaces with scratches, cracks, holes, stains and inclusions; classes `ok` and `defect`). It shows the whole pipeline working on
the device; it knows nothing about your parts. Train on your own images before relying on it.

| file | what |
|---|---|
| `defect.onnx` | float32, ONNX Runtime (default on the device) |
| `defect.tflite` | float32, LiteRT |
| `defect_int8.tflite` | full-integer int8, LiteRT (smallest, fastest on ARM) |
| `manifest.json` | input spec, labels, thresholds, metrics, sha256 and golden samples of every file |
| `evaluation.json` / `.txt` | held-out test split of the training set (Keras model) |
| `defect.keras` | the Keras model (training side only: benchmarks, fine-tuning; never loaded on the device) |
| `check_evaluation.json` | each exported file scored on a fresh synthetic set (seed {check_seed}) |

Labels: {labels}. Input: {shape} {color}, 0..255 (scaling is inside the model).

Results on {n_check} fresh synthetic images (seed {check_seed}):

{check_table}

Rebuild: `make models` (or `python -m training.make_defect_model --out models/defect`), about
{minutes} min on 2 CPU cores.

## Train on your own images

1. Put images in one folder per class; the good parts in `ok/` (or `good/`), defects in `defect/` or
   one folder per kind (`scratch/`, `crack/`, ...). Any size, gray or colour; a few hundred per class
   is a good start.
2. `smartstock train cnn --data my_images/ --out models/mine [--epochs 40] [--image-size 96]`
   (needs `pip install 'smartstock[train]'`, on a workstation, not on the device).
3. Check it: `smartstock eval cnn --model models/mine/defect.onnx --data my_test_images/`.
4. Point the device at it: `[vision] model = "models/mine/defect.onnx"` (or push it over the air).
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.make_defect_model", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("models/defect"))
    p.add_argument("--n", type=int, default=N_TRAIN, help="synthetic training images")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--classes", choices=["binary", "multi"], default="binary",
                   help="binary: ok/defect (the shipped demo); multi: one class per defect kind")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    work = Path(tempfile.mkdtemp(prefix="smartstock-synth-"))
    try:
        generate(work / "train", args.n, seed=TRAIN_SEED, size=SYNTH_SIZE, classes=args.classes)
        generate(work / "check", N_CHECK, seed=CHECK_SEED, size=SYNTH_SIZE, classes=args.classes)
        recipe = TrainRecipe(model_id="defect-demo-synthetic", release=1, image_size=96,
                             description="DEMO model trained on synthetic images (training/synth.py); "
                                         "not for production inspection")
        if args.epochs:
            recipe.epochs = args.epochs
        tmp_out = work / "model"
        result = train_and_export(work / "train", tmp_out, recipe)
        check = check_exports(tmp_out, work / "check")
        (tmp_out / "check_evaluation.json").write_text(json.dumps(check, indent=2) + "\n")
        ds = result["dataset"]
        rows = ["| file | accuracy | defect recall | false alarms |", "|---|---|---|---|"]
        rows += [f"| {Path(r['model']).name} | {r['accuracy']:.4f} | {r['defect_recall']:.4f} | "
                 f"{r['false_alarm_rate']:.4f} |" for r in check.values()]
        (tmp_out / "README.md").write_text(README.format(
            check_seed=CHECK_SEED, n_check=N_CHECK, labels=", ".join(ds.labels), shape=ds.spec.shape[1:],
            color=ds.spec.color, check_table="\n".join(rows), minutes=max(1, round(result["seconds"] / 60))))
        args.out.mkdir(parents=True, exist_ok=True)
        for f in tmp_out.iterdir():
            shutil.copy2(f, args.out / f.name)
        for r in check.values():
            print(f"{Path(r['model']).name:20s} accuracy {r['accuracy']:.4f}  defect recall {r['defect_recall']:.4f}  "
                  f"false alarms {r['false_alarm_rate']:.4f}")
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def check_exports(model_dir: Path, data: Path) -> dict[str, dict]:
    """Score every exported file with the device classifier (`smartstock eval cnn`'s code)."""
    from smartstock.vision.classifier import DefectClassifier
    from smartstock.vision.evaluate_cli import evaluate_folder
    from smartstock.vision.manifest import load_manifest

    out = {}
    for fmt, art in load_manifest(model_dir).artifacts.items():
        report, _ = evaluate_folder(DefectClassifier.load(model_dir / art.file), data)
        report["model"] = art.file
        out[fmt] = {k: report[k] for k in ("model", "images", "accuracy", "defect_recall", "false_alarm_rate",
                                            "per_class", "confusion", "thresholds")}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
