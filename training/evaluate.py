"""Evaluation of a trained model on held-out images: JSON + text, with the device's decision rule.

Metric code is smartstock.vision.metrics, the same that `smartstock eval cnn` uses on exported models.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from smartstock.vision.classifier import DEFAULT_THRESHOLD, decide
from smartstock.vision.metrics import evaluate_scores, format_report, threshold_for_recall

logger = logging.getLogger(__name__)


def choose_thresholds(y_val: np.ndarray, scores_val: np.ndarray, labels: Sequence[str],
                      defect_labels: Sequence[str], target_recall: float = 0.99,
                      max_false_alarms: float = 0.05) -> dict[str, float]:
    """One threshold for every defect label, from validation P(defect) = sum of the defect scores.

    The highest threshold that reaches the target recall is used when it stays at or below 0.5 (so it can
    only add recall to the plain argmax) and its validation false-alarm rate is at most
    `max_false_alarms`; otherwise 0.5 (a weak model would flag most good parts, which no line accepts).
    """
    default = {name: DEFAULT_THRESHOLD for name in defect_labels}
    defect_idx = [i for i, name in enumerate(labels) if name in defect_labels]
    is_def = np.isin(y_val, defect_idx)
    if not is_def.any() or is_def.all():
        return default
    t = threshold_for_recall(is_def, scores_val[:, defect_idx].sum(1), target_recall)
    if t["false_positive_rate"] > max_false_alarms:
        logger.warning("reaching %.0f%% defect recall on validation would flag %.0f%% of good parts; "
                       "keeping threshold %.2f", target_recall * 100, t["false_positive_rate"] * 100, DEFAULT_THRESHOLD)
        return default
    value = round(float(np.clip(t["threshold"], 0.05, DEFAULT_THRESHOLD)), 4)
    return {name: value for name in defect_labels}


def evaluate(y: np.ndarray, scores: np.ndarray, labels: Sequence[str], defect_labels: Sequence[str],
             thresholds: dict[str, float], target_recall: float = 0.99) -> dict[str, Any]:
    """Report with the decision rule the device applies (thresholds), plus the plain argmax accuracy."""
    y_pred = np.array([decide(s, labels, defect_labels, thresholds)[0] for s in scores])
    report = evaluate_scores(y, scores, labels, defect_labels, y_pred=y_pred, target_recall=target_recall)
    report["argmax_accuracy"] = float(np.mean(scores.argmax(1) == y))
    report["thresholds"] = dict(thresholds)
    return report


def write_evaluation(out_dir: Path, report: dict[str, Any], name: str = "evaluation") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    j = out_dir / f"{name}.json"
    t = out_dir / f"{name}.txt"
    j.write_text(json.dumps(report, indent=2) + "\n")
    t.write_text(format_report(report) + "\n")
    return j, t
