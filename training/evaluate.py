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


CHANCE_MARGIN = 0.1  # balanced accuracy must beat chance (1/k, or 0.5 for defect vs good) by this much
FALSE_ALARM_WARNING = 0.1  # fit, but this share of good parts scrapped is worth a loud warning


def judge_fitness(report: dict[str, Any], recall_floor: float = 0.9, split: str = "test") -> dict[str, Any]:
    """Is a model fit to run on a line, judged on a held-out split's report (evaluate())?

    With a good class: defect recall (any defect kind called a defect) must reach `recall_floor`, and
    telling defects from good parts must beat chance (a model that flags every part has recall 1.0 and
    is useless). Without a good class (a defect-type classifier) the mean recall over the kinds must
    reach the floor and beat 1/k. Returns {fit_for_use, reasons, ...}; the reasons are plain sentences.
    """
    labels, defect_labels = report["labels"], report["defect_labels"]
    reasons: list[str] = []
    warnings: list[str] = []
    out: dict[str, Any] = {"recall_floor": recall_floor, "images": report["images"]}
    if len(defect_labels) < len(labels):
        recall = report.get("defect_recall")
        far = report.get("false_alarm_rate")
        cm = np.asarray(report["confusion"])
        defect_idx = [i for i, name in enumerate(labels) if name in defect_labels]
        out["defect_images"] = int(cm[defect_idx].sum())
        if recall is None or far is None:
            reasons.append("the test split lacks defect or good images, so defect recall cannot be measured")
        else:
            detection = (recall + 1.0 - far) / 2
            out.update(defect_recall=recall, false_alarm_rate=far, detection_balanced_accuracy=detection)
            if recall < recall_floor:
                reasons.append(f"defect recall {recall:.3f} on its own {split} split ({out['defect_images']} defect "
                               f"images) is below the floor {recall_floor:g}")
            if far > FALSE_ALARM_WARNING:
                warnings.append(f"{far:.1%} of the good parts in the {split} split are flagged as defects (they "
                                "would be scrapped): add good images, or raise the threshold (vision.thresholds)")
            if detection <= 0.5 + CHANCE_MARGIN:
                reasons.append(f"no better than chance at telling defects from good parts (balanced accuracy "
                               f"{detection:.3f}: recall {recall:.3f}, false alarms {far:.3f})")
    else:
        bal = report["balanced_accuracy"]
        chance = 1.0 / len(labels)
        out["balanced_accuracy"] = bal
        if bal < recall_floor:
            reasons.append(f"mean recall over the defect kinds {bal:.3f} on its own {split} split is below the "
                           f"floor {recall_floor:g}")
        if bal <= chance + CHANCE_MARGIN:
            reasons.append(f"no better than chance at telling the kinds apart (mean recall {bal:.3f}, chance "
                           f"{chance:.3f})")
    out.update(fit_for_use=not reasons, reasons=reasons, warnings=warnings)
    return out
