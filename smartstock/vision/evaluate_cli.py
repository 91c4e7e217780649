"""`smartstock eval cnn --model F --data DIR [--json] [--backend]`: score an exported model on a class folder.

Unreadable images are skipped and listed; the evaluation still runs on the rest and the command
then exits with code 3 (bad input data, the good ones were kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from smartstock.errors import InputError
from smartstock.vision.classifier import DefectClassifier, decide
from smartstock.vision.images import read_image, scan_image_folder
from smartstock.vision.metrics import evaluate_scores, format_report

logger = logging.getLogger(__name__)
BATCH = 32


def evaluate_folder(clf: DefectClassifier, data: Path) -> tuple[dict, list[str]]:
    """Report on every image of a class folder, plus the list of skipped files."""
    folder = scan_image_folder(data, min_classes=1)
    if clf.manifest.anomaly is not None:  # good-only detector: every folder but the good one is a defect kind
        good = [n for n in folder.labels if n in clf.labels and n not in clf.manifest.defect_labels]
        folder.labels = [n if n in good else clf.manifest.defect_labels[0] for n in folder.labels]
    missing = sorted(set(folder.labels) - set(clf.labels))
    if missing:
        raise InputError(f"{data}: class folder(s) {missing} are not labels of the model ({clf.labels})",
                         hint="name the class subfolders like the model's labels")
    to_model = [clf.labels.index(name) for name in folder.labels]
    y_true, scores, skipped = [], [], []
    for start in range(0, len(folder.files), BATCH):
        frames, ys = [], []
        for path, y in folder.files[start:start + BATCH]:
            try:
                frames.append(read_image(path))
                ys.append(to_model[y])
            except InputError as e:
                skipped.append(str(e))
        if frames:
            scores.append(clf.scores_batch(frames))
            y_true += ys
    if not y_true:
        raise InputError(f"{data}: no readable images", hint="check the files: " + "; ".join(skipped[:3]))
    s = np.concatenate(scores)
    m = clf.manifest
    y_pred = np.array([decide(row, m.labels, m.defect_labels, clf.thresholds)[0] for row in s])
    report = evaluate_scores(np.array(y_true), s, m.labels, m.defect_labels, y_pred=y_pred)
    report.update(model=str(clf.model_path), model_id=clf.model_id, release=clf.release,
                  backend=clf.backend.type, thresholds=clf.thresholds, skipped=skipped)
    return report, skipped


def run(args: argparse.Namespace) -> int:
    clf = DefectClassifier.load(args.model, backend=getattr(args, "backend", "auto"))
    report, skipped = evaluate_folder(clf, args.data)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"model: {report['model']} ({report['model_id']} release {report['release']}, {report['backend']})")
        print(format_report(report))
    for s in skipped:
        print(f"skipped: {s}", file=sys.stderr)
    return 3 if skipped else 0
