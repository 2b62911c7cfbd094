"""Accuracy of a ground classification against reference (vendor) classes.

Errors as in Sithole & Vosselman (2004): Type I = ground rejected as object, Type II = object
accepted as ground, total = misclassified / scored points; plus Cohen's kappa. Reference classes
that are neither ground nor object (water, noise, never-classified) are left out of the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ASPRS water (9), low/high noise (7, 18) and "created, never classified" (0) are not scored
DEFAULT_EXCLUDED = (0, 7, 9, 18)


@dataclass(frozen=True)
class GroundAccuracy:
    n: int
    ground_as_object: int  # Type I count
    object_as_ground: int  # Type II count
    reference_ground: int
    reference_object: int
    type1: float
    type2: float
    total_error: float
    kappa: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def ground_accuracy(predicted_ground: np.ndarray, reference_classes: np.ndarray, *,
                    ground_class: int = 2, excluded=DEFAULT_EXCLUDED) -> GroundAccuracy:
    """Compare a boolean ground prediction with reference ASPRS classes."""
    ref_cls = np.asarray(reference_classes)
    keep = ~np.isin(ref_cls, np.asarray(excluded))
    pred = np.asarray(predicted_ground, dtype=bool)[keep]
    ref = ref_cls[keep] == ground_class
    n = int(ref.size)
    a = int(np.count_nonzero(ref & ~pred))
    b = int(np.count_nonzero(~ref & pred))
    g = int(np.count_nonzero(ref))
    o = n - g
    return GroundAccuracy(
        n=n, ground_as_object=a, object_as_ground=b, reference_ground=g, reference_object=o,
        type1=a / g if g else 0.0, type2=b / o if o else 0.0, total_error=(a + b) / n if n else 0.0,
        kappa=cohen_kappa(pred, ref),
    )


def cohen_kappa(pred: np.ndarray, ref: np.ndarray) -> float:
    """Cohen's kappa of two boolean labelings."""
    n = pred.size
    if n == 0:
        return 0.0
    po = np.count_nonzero(pred == ref) / n
    p_pred, p_ref = np.count_nonzero(pred) / n, np.count_nonzero(ref) / n
    pe = p_pred * p_ref + (1 - p_pred) * (1 - p_ref)
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


@dataclass(frozen=True)
class DetectionAccuracy:
    tp: float
    fp: float
    fn: float
    precision: float
    recall: float
    f1: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def detection_f1(predicted: np.ndarray, reference: np.ndarray) -> DetectionAccuracy:
    """Precision/recall/F1 of two boolean masks (per point or per cell)."""
    p = np.asarray(predicted, dtype=bool)
    r = np.asarray(reference, dtype=bool)
    tp = float(np.count_nonzero(p & r))
    fp = float(np.count_nonzero(p & ~r))
    fn = float(np.count_nonzero(~p & r))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionAccuracy(tp, fp, fn, precision, recall, f1)
