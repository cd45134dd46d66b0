"""Confidence intervals for the promotion gate: how sure a validation set lets it be that a
candidate is worse than the serving model, and how many normals an FPR verdict needs.

Both models are scored on the same validation windows, so their figures are paired: the
intervals of a difference use that (Newcombe 1998 for rates, DeLong et al. 1988 for AUROC),
which makes them much narrower than two independent intervals would be.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

#: what "enough normals" means: an FPR of twice the tolerated one is found with this probability
FPR_POWER = 0.8


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def wilson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a rate (Newcombe's building block; good at 0 and at n)."""
    if trials == 0:
        return 0.0, 1.0
    z, p = _z(confidence), successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_rate_difference(candidate: np.ndarray, current: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(difference, low, high) of the rate of True in `candidate` minus that in `current`, two
    verdicts on the same windows: Newcombe's hybrid score interval for paired data (method 10 of
    Newcombe 1998, Stat Med 17:2635), which stays inside [-1, 1] and is honest at 0 discordant pairs."""
    candidate, current = np.asarray(candidate, bool), np.asarray(current, bool)
    n = len(candidate)
    both, only_candidate = int((candidate & current).sum()), int((candidate & ~current).sum())
    only_current, neither = int((~candidate & current).sum()), int((~candidate & ~current).sum())
    p1, p2 = (both + only_candidate) / n, (both + only_current) / n
    l1, u1 = wilson(both + only_candidate, n, confidence)
    l2, u2 = wilson(both + only_current, n, confidence)
    margins = ((both + only_candidate) * (only_current + neither) * (both + only_current) * (only_candidate + neither))
    phi = (both * neither - only_candidate * only_current) / math.sqrt(margins) if margins else 0.0
    difference = p1 - p2
    low = difference - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = difference + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return difference, max(-1.0, low), min(1.0, high)


def _placements(anomalous: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: for each anomaly the share of normals it outscores, and
    for each normal the share of anomalies that outscore it (ties count half)."""
    normal_sorted, anomalous_sorted = np.sort(normal), np.sort(anomalous)
    below = np.searchsorted(normal_sorted, anomalous, "left")
    tied = np.searchsorted(normal_sorted, anomalous, "right") - below
    per_anomaly = (below + 0.5 * tied) / len(normal)
    at_or_below = np.searchsorted(anomalous_sorted, normal, "right")
    tied = at_or_below - np.searchsorted(anomalous_sorted, normal, "left")
    per_normal = (len(anomalous) - at_or_below + 0.5 * tied) / len(anomalous)
    return per_anomaly, per_normal


def paired_auroc_difference(y: np.ndarray, candidate: np.ndarray, current: np.ndarray,
                            confidence: float) -> tuple[float, float, float]:
    """(difference, low, high) of the candidate's AUROC minus the current one's, both scored on
    the same windows (y = 1: anomaly): DeLong's variance of correlated AUROCs, a normal interval."""
    y = np.asarray(y) == 1
    components = [_placements(np.asarray(s, np.float64)[y], np.asarray(s, np.float64)[~y]) for s in (candidate, current)]
    per_anomaly = np.stack([c[0] for c in components])
    per_normal = np.stack([c[1] for c in components])
    difference = float(per_anomaly[0].mean() - per_anomaly[1].mean())
    variance = 0.0
    for placements in (per_anomaly, per_normal):
        if placements.shape[1] > 1:
            covariance = np.cov(placements)
            variance += (covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]) / placements.shape[1]
    half = _z(confidence) * math.sqrt(max(0.0, variance))
    return difference, max(-1.0, difference - half), min(1.0, difference + half)


@lru_cache(maxsize=64)
def normals_needed(tolerated_fpr: float, confidence: float, power: float = FPR_POWER) -> int:
    """The fewest validation normals with which an FPR of twice `tolerated_fpr` is found
    significantly above it (the exact interval's lower end above it) with probability `power`;
    with fewer, a candidate's FPR passing the check means little."""
    from scipy.stats import binom

    if not 0 < tolerated_fpr < 0.5:
        raise ValueError(f"the tolerated FPR must lie in (0, 0.5), got {tolerated_fpr}")
    alpha = (1 - confidence) / 2  # the interval's lower end is a one-sided bound at this level
    n = np.arange(1, int(200 / tolerated_fpr) + 1)
    first_significant = binom.isf(alpha, n, tolerated_fpr).astype(int) + 1  # P(X >= k | tolerated) <= alpha
    found = binom.sf(first_significant - 1, n, 2 * tolerated_fpr) >= power
    return int(n[np.argmax(found)])
