"""The promotion gate: a candidate replaces the current model only if it is not worse on a
validation set (reference normals held out of training, plus the confirmed labels held out
by stream or by time: `store.gate_split`, so the figures are on records or a period the
candidate was not trained on), and not worse on a trusted set that new labels cannot argue with.

Figures per model: AUROC (anomalies against normals), FPR at the model's own threshold on
the validation normals, and recall at threshold on the confirmed anomalies. The two models are
scored on the same windows, and a figure refuses the candidate only when its confidence interval
(paired: `intervals.py`) shows it worse than allowed; the FPR only when it is significantly above
both the current model's and what the model's target tolerates. Too few validation anomalies or
normals to conclude anything: no promotion, and the reason says so.

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

from agad_stream.calibration import clopper_pearson
from pipelines.learning import intervals

if TYPE_CHECKING:
    from agad_stream import AGAD


@dataclass
class GateRule:
    """When the validation set shows a candidate worse than the current model.

    Each figure gets a `confidence` interval of the candidate's difference from the current
    model (both scored on the same windows); a figure refuses the candidate only when the whole
    interval lies beyond what is allowed. A point difference on a few hundred windows is
    noise: 3 -> 11 false positives of 798 normals is not a worse model when the promise is 1%.
    """

    max_auroc_drop: float = 0.0
    #: the FPR may rise above the current one by this; and it refuses only when it is also
    #: significantly above `fpr_tolerance` x the model's target FPR
    max_fpr_increase: float = 0.0
    max_recall_drop: float = 0.0
    #: fewer held-out confirmed anomalies than this: recall and AUROC mean nothing, so no promotion
    min_validation_anomalies: int = 3
    #: share of the trusted anomalies detected by the current model that the candidate may miss
    max_trusted_recall_drop: float = 0.05
    #: share of new labels that may contradict the current model on the trusted set
    max_contradicting_share: float = 0.5
    confidence: float = 0.95
    #: the FPR a model may show on validation normals, as a multiple of its target (the promise
    #: that calibration keeps: benchmarks.md, "Alarms you can trust")
    fpr_tolerance: float = 1.5
    #: fewer validation normals than this: no promotion. None: as many as find an FPR of twice the
    #: tolerated one with 80% power (`intervals.normals_needed`; 713 for a 1% target)
    min_validation_normals: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Validation:
    """One model's scores of the gate's validation windows (y = 1: a confirmed anomaly)."""

    scores: np.ndarray
    y: np.ndarray
    threshold: float
    target_fpr: float

    @classmethod
    def of(cls, model: AGAD, X: np.ndarray, y: np.ndarray) -> Validation:
        return cls(model.score_samples(X), np.asarray(y), float(model.threshold_), float(model.target_fpr))

    @property
    def flagged(self) -> np.ndarray:
        return self.scores > self.threshold

    def figures(self) -> dict:
        """AUROC, FPR and recall at the model's threshold, and the counts they rest on."""
        normal, anomalous = self.y == 0, self.y == 1
        return {
            "auroc": float(roc_auc_score(self.y, self.scores)) if normal.any() and anomalous.any() else None,
            "fpr": float(self.flagged[normal].mean()) if normal.any() else None,
            "recall": float(self.flagged[anomalous].mean()) if anomalous.any() else None,
            "threshold": self.threshold, "target_fpr": self.target_fpr,
            "normals": int(normal.sum()), "anomalies": int(anomalous.sum()),
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


def decide(current: Validation, candidate: Validation, rule: GateRule, trusted: dict | None = None,
           contradicting: dict | None = None) -> tuple[bool, list[str], dict]:
    """(promote, reasons, intervals): a reason for each check, a figure's with its interval and verdict;
    the intervals as numbers, for the registry log."""
    promote, reasons = _decide_trusted(trusted, contradicting, rule)
    normal, anomalous = candidate.y == 0, candidate.y == 1
    tolerated = rule.fpr_tolerance * candidate.target_fpr
    normals_needed = (rule.min_validation_normals if rule.min_validation_normals is not None
                      else intervals.normals_needed(tolerated, rule.confidence))
    if anomalous.sum() < max(1, rule.min_validation_anomalies):
        promote = False
        reasons.insert(0, f"only {int(anomalous.sum())} held-out confirmed anomalies in the validation set "
                          f"(the rule needs {rule.min_validation_anomalies})")
    if normal.sum() < max(1, normals_needed):
        promote = False
        reasons.insert(0, f"only {int(normal.sum())} validation normals: too few to tell an FPR of {2 * tolerated:.3f} "
                          f"from the {tolerated:.3f} tolerated (the rule needs {normals_needed}: store more reference "
                          f"windows with `models reference --replace`, or set --min-validation-normals)")
    if not (anomalous.any() and normal.any()):
        return False, reasons, {}
    level = f"{rule.confidence:.0%}"
    found = {
        "auroc": intervals.paired_auroc_difference(candidate.y, candidate.scores, current.scores, rule.confidence),
        "recall": intervals.paired_rate_difference(candidate.flagged[anomalous], current.flagged[anomalous],
                                                   rule.confidence),
        "fpr": intervals.paired_rate_difference(candidate.flagged[normal], current.flagged[normal], rule.confidence),
    }
    before, after = current.figures(), candidate.figures()
    for key, name, allowed in (("auroc", "AUROC", rule.max_auroc_drop),
                               ("recall", "recall on confirmed anomalies", rule.max_recall_drop)):
        difference, low, high = found[key]
        ok = high >= -allowed - 1e-12  # refused only when even the interval's top is a fall beyond the allowed
        promote &= ok
        verdict = "ok" if ok else f"worse by {-difference:.3f}, significantly more than the {allowed:.3f} allowed"
        reasons.append(f"{name} {before[key]:.3f} -> {after[key]:.3f}: {difference:+.3f}, {level} interval "
                       f"[{low:+.3f}, {high:+.3f}] ({int(anomalous.sum())} anomalies): {verdict}")
    difference, low, high = found["fpr"]
    positives = int(candidate.flagged[normal].sum())
    fpr_low, fpr_high = clopper_pearson(positives, int(normal.sum()), rule.confidence)
    above_current = low > rule.max_fpr_increase + 1e-12
    above_tolerated = fpr_low > tolerated + 1e-12
    ok = not (above_current and above_tolerated)
    promote &= ok
    verdict = ("ok: " + ("not significantly above the current one" if not above_current
                         else f"significantly above the current one, not significantly above the {tolerated:.4f} tolerated")
               if ok else f"worse by {difference:.3f}, significantly above both the current one and the "
                          f"{tolerated:.4f} tolerated")
    reasons.append(f"FPR at threshold {before['fpr']:.4f} -> {after['fpr']:.4f} ({positives} of {int(normal.sum())} "
                   f"normals, {level} interval [{fpr_low:.4f}, {fpr_high:.4f}]; tolerated {rule.fpr_tolerance:g} x the "
                   f"{candidate.target_fpr:g} target = {tolerated:.4f}): {difference:+.4f}, {level} interval "
                   f"[{low:+.4f}, {high:+.4f}]: {verdict}")
    figures = {f"{k}_difference": dict(zip(("difference", "low", "high"), v)) for k, v in found.items()}
    figures["fpr_of_candidate"] = {"fpr": after["fpr"], "low": fpr_low, "high": fpr_high, "tolerated": tolerated}
    return promote, reasons, figures


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
