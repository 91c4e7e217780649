"""Classification metrics shared by `smartstock eval cnn` and training's evaluation (pure functions)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def decisive_agreement(scores: np.ndarray, reference: np.ndarray, margin: float) -> tuple[float, int]:
    """Label agreement with `reference` on the images where the reference is decisive (its top two
    scores differ by at least `margin`), and how many such images there were.

    An 8-bit model is expected to flip near-ties (the output has 256 levels); a flip on an image the
    float model was sure about is what a broken quantisation looks like, so only those count.
    """
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape[1] < 2:
        return 1.0, 0
    top2 = np.sort(ref, axis=1)[:, -2:]
    sure = (top2[:, 1] - top2[:, 0]) >= margin
    n = int(sure.sum())
    if n == 0:
        return 1.0, 0
    return float(np.mean(np.asarray(scores)[sure].argmax(1) == ref[sure].argmax(1))), n


def per_class(cm: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, name in enumerate(labels):
        tp = cm[i, i]
        pred = cm[:, i].sum()
        true = cm[i, :].sum()
        p = float(tp / pred) if pred else 0.0
        r = float(tp / true) if true else 0.0
        out[name] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": int(true)}
    return out


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present: a model that calls everything the common class scores 1/k."""
    cm = np.asarray(cm)
    support = cm.sum(1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present])) if present.any() else 0.0


def roc_curve(y_defect: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) for a binary defect score, thresholds descending (score >= t is a defect)."""
    y = np.asarray(y_defect, bool)
    s = np.asarray(score, np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.where(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = np.cumsum(~y)[distinct]
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / neg], np.r_[0.0, tps / pos], np.r_[np.inf, s[distinct]]


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def threshold_for_recall(y_defect: np.ndarray, score: np.ndarray, target: float) -> dict[str, float]:
    """Highest threshold whose defect recall reaches `target` (fewest false alarms), with its FPR."""
    fpr, tpr, thr = roc_curve(y_defect, score)
    ok = np.where(tpr >= target)[0]
    i = int(ok[0]) if len(ok) else len(thr) - 1
    return {"target_recall": target, "threshold": float(min(thr[i], 1.0)), "recall": float(tpr[i]),
            "false_positive_rate": float(fpr[i])}


def evaluate_scores(y_true: np.ndarray, scores: np.ndarray, labels: Sequence[str], defect_labels: Sequence[str],
                    y_pred: np.ndarray | None = None, target_recall: float = 0.99) -> dict[str, Any]:
    """Full report: accuracy, per-class P/R, confusion, defect-vs-good recall, ROC AUC and threshold."""
    y_true = np.asarray(y_true, int)
    y_pred = scores.argmax(1) if y_pred is None else np.asarray(y_pred, int)
    cm = confusion_matrix(y_true, y_pred, len(labels))
    defect_idx = [i for i, name in enumerate(labels) if name in defect_labels]
    is_def = np.isin(y_true, defect_idx)
    pred_def = np.isin(y_pred, defect_idx)
    p_def = scores[:, defect_idx].sum(1) if defect_idx else np.zeros(len(y_true))
    report: dict[str, Any] = {
        "images": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "labels": list(labels),
        "defect_labels": list(defect_labels),
        "per_class": per_class(cm, labels),
        "confusion": cm.tolist(),
        "balanced_accuracy": balanced_accuracy(cm),
        "defect_recall": float(pred_def[is_def].mean()) if is_def.any() else None,
        "defect_precision": float(is_def[pred_def].mean()) if pred_def.any() else None,
        "false_alarm_rate": float(pred_def[~is_def].mean()) if (~is_def).any() else None,
    }
    if is_def.any() and (~is_def).any():
        fpr, tpr, _ = roc_curve(is_def, p_def)
        report["roc_auc"] = auc(fpr, tpr)
        report["threshold_for_recall"] = threshold_for_recall(is_def, p_def, target_recall)
    return report


def format_report(report: dict[str, Any]) -> str:
    """Plain-text view of evaluate_scores() output."""
    labels = report["labels"]
    lines = [f"images: {report['images']}   accuracy: {report['accuracy']:.4f}"]
    if report.get("defect_recall") is not None:
        lines.append(f"defect recall: {report['defect_recall']:.4f}   defect precision: "
                     f"{(report.get('defect_precision') or 0):.4f}   false alarms: {(report.get('false_alarm_rate') or 0):.4f}")
    if "roc_auc" in report:
        t = report["threshold_for_recall"]
        lines.append(f"ROC AUC (defect vs good): {report['roc_auc']:.4f}   threshold for {t['target_recall']:.0%} "
                     f"recall: {t['threshold']:.3f} (recall {t['recall']:.4f}, false alarms {t['false_positive_rate']:.4f})")
    w = max(9, *(len(n) for n in labels))
    lines += ["", f"{'class':<{w}}  precision  recall     f1  support"]
    for name in labels:
        c = report["per_class"][name]
        lines.append(f"{name:<{w}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:5.3f}  {c['support']:7d}")
    lines += ["", "confusion (rows = true, columns = predicted)", " " * (w + 2) + " ".join(f"{n[:8]:>8}" for n in labels)]
    for name, row in zip(labels, report["confusion"]):
        lines.append(f"{name:<{w}}  " + " ".join(f"{v:8d}" for v in row))
    return "\n".join(lines)
