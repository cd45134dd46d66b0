"""The promotion gate: a candidate replaces the current model only if it is not worse on a
fixed validation set (reference normals held out of training, plus the validation share
of confirmed labels).

Figures per model: AUROC (anomalies against normals), FPR at the model's own threshold on
the validation normals, and recall at threshold on the confirmed anomalies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import roc_auc_score

if TYPE_CHECKING:
    from agad_stream import AGAD


@dataclass
class GateRule:
    """How much worse than the current model a candidate may be on each figure."""

    max_auroc_drop: float = 0.0
    max_fpr_increase: float = 0.01
    max_recall_drop: float = 0.0
    #: fewer held-out confirmed anomalies than this: recall and AUROC mean nothing, so no promotion
    min_validation_anomalies: int = 3

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(model: AGAD, X: np.ndarray, y: np.ndarray) -> dict:
    """AUROC, FPR and recall at threshold of `model` on prepared windows X with labels y (1 = anomaly)."""
    scores = model.score_samples(X)
    flagged = scores > model.threshold_
    normal, anomalous = y == 0, y == 1
    both = normal.any() and anomalous.any()
    return {
        "auroc": float(roc_auc_score(y, scores)) if both else None,
        "fpr": float(flagged[normal].mean()) if normal.any() else None,
        "recall": float(flagged[anomalous].mean()) if anomalous.any() else None,
        "threshold": float(model.threshold_),
        "normals": int(normal.sum()),
        "anomalies": int(anomalous.sum()),
    }


def decide(current: dict, candidate: dict, rule: GateRule) -> tuple[bool, list[str]]:
    """(promote, reasons): one line per figure, saying how it moved against what the rule allows."""
    if candidate["anomalies"] < rule.min_validation_anomalies:
        return False, [f"only {candidate['anomalies']} held-out confirmed anomalies in the validation set "
                       f"(the rule needs {rule.min_validation_anomalies})"]
    checks = [  # name, current, candidate, how much worse is allowed, +1 if higher is better
        ("AUROC", current["auroc"], candidate["auroc"], rule.max_auroc_drop, +1),
        ("FPR at threshold", current["fpr"], candidate["fpr"], rule.max_fpr_increase, -1),
        ("recall on confirmed anomalies", current["recall"], candidate["recall"], rule.max_recall_drop, +1),
    ]
    promote, reasons = True, []
    for name, before, after, allowed, sign in checks:
        worse_by = sign * (before - after)
        ok = worse_by <= allowed + 1e-12
        promote &= ok
        verdict = "ok" if ok else f"worse by {worse_by:.3f}, more than the {allowed:.3f} allowed"
        reasons.append(f"{name} {before:.3f} -> {after:.3f}: {verdict}")
    return promote, reasons
