"""The promotion gate: a candidate replaces the current model only if it is not worse on a
validation set (reference normals held out of training, plus the confirmed labels held out
by stream or by time: `store.gate_split`, so the figures are on records or a period the
candidate was not trained on), and not worse on a trusted set that new labels cannot argue with.

Figures per model: AUROC (anomalies against normals), FPR at the model's own threshold on
the validation normals, and recall at threshold on the confirmed anomalies.

The trusted set is the registry's reference normals plus every confirmed anomaly a promoted
version was built on (copied when it was promoted, so relabelling cannot change it). Since
the validation share comes from the same, possibly forged, labels as training, a flood of
"false alarm" labels on real anomalies can make a blind candidate look better there; on the
trusted set it cannot. Two checks use it:
- the candidate must keep detecting the trusted anomalies the current model detects;
- at most a share of the new labels may contradict the current model on the trusted set:
  a "false alarm" on a window the current model scores above every trusted normal.
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
    #: share of the trusted anomalies detected by the current model that the candidate may miss
    max_trusted_recall_drop: float = 0.05
    #: share of new labels that may contradict the current model on the trusted set
    max_contradicting_share: float = 0.5

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


def trusted_figures(current: AGAD, candidate: AGAD, anomalies: np.ndarray) -> dict:
    """How many trusted anomalies (prepared windows) the current model detects, and how many of
    those the candidate still detects. (The trusted normals are checked already: the reference
    normals held out of training are the validation normals.)"""
    detected = _flagged(current, anomalies)
    kept = _flagged(candidate, anomalies[detected]) if detected.any() else np.zeros(0, bool)
    return {"anomalies": int(len(anomalies)), "detected_by_current": int(detected.sum()),
            "kept_by_candidate": int(kept.sum())}


def contradictions(current: AGAD, new_X: np.ndarray, new_y: np.ndarray, trusted_normals: np.ndarray) -> dict:
    """New labels that contradict the current model on the trusted set: false alarms on windows
    it scores above every trusted normal."""
    false_alarms = new_X[new_y == 0]
    highest_normal = float(current.score_samples(trusted_normals).max())
    above = int((current.score_samples(false_alarms) > highest_normal).sum()) if len(false_alarms) else 0
    return {"new_labels": int(len(new_y)), "contradicting": above, "highest_trusted_normal_score": highest_normal}


def near_identical_conflicts(X: np.ndarray, y: np.ndarray, tolerance: float = 0.01) -> int:
    """Windows labelled one way that are near-identical (relative L2 distance under `tolerance`)
    to a window labelled the other way: a reviewer's slip, or a forgery."""
    flat = X.reshape(len(X), -1).astype(np.float64)
    anomalies, normals = flat[y == 1], flat[y == 0]
    if not len(anomalies) or not len(normals):
        return 0
    distance = np.sqrt(np.maximum(0.0, (anomalies**2).sum(1)[:, None] + (normals**2).sum(1)[None, :]
                                  - 2 * anomalies @ normals.T))
    scale = np.maximum(np.linalg.norm(normals, axis=1)[None, :], 1e-12)
    close = distance / scale < tolerance
    return int(close.any(axis=1).sum() + close.any(axis=0).sum())


def _flagged(model: AGAD, X: np.ndarray) -> np.ndarray:
    return model.score_samples(X) > model.threshold_ if len(X) else np.zeros(0, bool)


def decide(current: dict, candidate: dict, rule: GateRule, trusted: dict | None = None,
           contradicting: dict | None = None) -> tuple[bool, list[str]]:
    """(promote, reasons): one line per figure, saying how it moved against what the rule allows."""
    promote, reasons = _decide_trusted(trusted, contradicting, rule)
    if candidate["anomalies"] < rule.min_validation_anomalies:
        return False, [f"only {candidate['anomalies']} held-out confirmed anomalies in the validation set "
                       f"(the rule needs {rule.min_validation_anomalies})", *reasons]
    checks = [  # name, current, candidate, how much worse is allowed, +1 if higher is better
        ("AUROC", current["auroc"], candidate["auroc"], rule.max_auroc_drop, +1),
        ("FPR at threshold", current["fpr"], candidate["fpr"], rule.max_fpr_increase, -1),
        ("recall on confirmed anomalies", current["recall"], candidate["recall"], rule.max_recall_drop, +1),
    ]
    for name, before, after, allowed, sign in checks:
        worse_by = sign * (before - after)
        ok = worse_by <= allowed + 1e-12
        promote &= ok
        verdict = "ok" if ok else f"worse by {worse_by:.3f}, more than the {allowed:.3f} allowed"
        reasons.append(f"{name} {before:.3f} -> {after:.3f}: {verdict}")
    return promote, reasons


def _decide_trusted(trusted: dict | None, contradicting: dict | None, rule: GateRule) -> tuple[bool, list[str]]:
    promote, reasons = True, []
    if contradicting is not None and contradicting["new_labels"]:
        share = contradicting["contradicting"] / contradicting["new_labels"]
        ok = share <= rule.max_contradicting_share + 1e-12
        promote &= ok
        reasons.append(f"new labels contradicting the current model on the trusted set: {contradicting['contradicting']} "
                       f"of {contradicting['new_labels']} (false alarms scored above every trusted normal): "
                       + ("ok" if ok else f"{share:.3f}, more than the {rule.max_contradicting_share:.3f} allowed"))
    detected = trusted["detected_by_current"] if trusted else 0
    if detected:
        missed = 1 - trusted["kept_by_candidate"] / detected
        ok = missed <= rule.max_trusted_recall_drop + 1e-12
        promote &= ok
        reasons.append(f"trusted anomalies the current model detects: the candidate keeps {trusted['kept_by_candidate']} "
                       f"of {detected}: " + ("ok" if ok else f"misses {missed:.3f}, more than the "
                                                             f"{rule.max_trusted_recall_drop:.3f} allowed"))
    return promote, reasons
