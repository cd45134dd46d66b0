"""A threshold from the scores of normal windows, and what its false-positive rate can be.

Why: the empirical 1 - target quantile of a few scores is their maximum (29 scores at a 1%
target), whose expected false-positive rate is 1/(n + 1), not the target. Two remedies:
more scores (out-of-fold scores of every normal training window, see ``AGAD``'s
``calibration="cross-fit"``) and a tail model that extrapolates beyond the largest scores
(peaks over threshold with a generalised Pareto fit, as in SPOT, Siffer et al., KDD 2017;
fitted by probability-weighted moments, Hosking & Wallis 1987: closed-form, so cheap enough
for a per-stream threshold updated on every window, and steadier than maximum likelihood
on the 10-100 peaks a calibration set has).
A third remedy costs nothing: the model's scores of its own training windows are many but
optimistic when it overfits them, so ``rescale_training_scores`` lifts them to the held-out
windows' level (ratio of medians, never lowered) before they join the held-out scores.
Either way the report says how far the promise can be trusted: a Clopper-Pearson interval
of the false-positive rate, and how many windows the target would need.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

TAILS = ("empirical", "pot")
#: exceedances of the target quantile that a calibration set should hold (10 give a relative standard error of ~30%)
EXCEEDANCES_NEEDED = 10
#: the fewest peaks a generalised Pareto fit is made on; below, the empirical quantile is used
MIN_PEAKS = 10
#: share of the scores taken as peaks when there are many (SPOT's initial threshold at the 98% quantile
#: needs thousands of scores; calibration sets are smaller)
PEAK_SHARE = 0.1
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Calibration:
    threshold: float
    tail: str  # the tail that set the threshold: "empirical" or "pot" (pot falls back to empirical on few scores)
    target_fpr: float
    n_scores: int
    exceedances: int  # calibration scores above the threshold
    expected_fpr: float
    fpr_interval: tuple[float, float]
    confidence: float
    windows_needed: int

    @property
    def supported(self) -> bool:
        return self.n_scores >= self.windows_needed

    def as_dict(self) -> dict:
        return {**asdict(self), "fpr_interval": list(self.fpr_interval)}

    def summary(self) -> str:
        lo, hi = self.fpr_interval
        return (f"threshold {self.threshold:.4g} ({self.tail} tail of {self.n_scores} normal scores): expected FPR "
                f"{self.expected_fpr:.4f}, {self.confidence:.0%} interval [{lo:.4f}, {hi:.4f}], target {self.target_fpr:g}")

    def shortfall(self) -> str:
        return (f"{self.n_scores} calibration windows cannot support target_fpr={self.target_fpr:g} "
                f"({self.summary()}); about {self.windows_needed} normal windows would "
                f"({EXCEEDANCES_NEEDED} / target_fpr)")


def calibrate(scores, target_fpr: float, tail: str = "empirical") -> Calibration:
    """The threshold whose false-positive rate on windows like ``scores`` is ``target_fpr``."""
    if tail not in TAILS:
        raise ValueError(f"threshold tail must be one of {TAILS}, got {tail!r}")
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    if not len(scores):
        raise ValueError("no calibration scores")
    used, threshold, expected = "empirical", float(np.quantile(scores, 1 - target_fpr, method="higher")), None
    if tail == "pot":
        fitted = pot_threshold(scores, target_fpr)
        if fitted is not None:
            used, threshold, expected = "pot", float(fitted), target_fpr
    n = len(scores)
    exceedances = int(np.sum(scores > threshold))
    if expected is None:  # a threshold at an order statistic: its FPR is Beta(x + 1, n - x), mean (x + 1) / (n + 1)
        expected = (exceedances + 1) / (n + 1)
    return Calibration(threshold, used, target_fpr, n, exceedances, float(expected),
                       clopper_pearson(exceedances, n, CONFIDENCE), CONFIDENCE,
                       math.ceil(EXCEEDANCES_NEEDED / target_fpr))


def pot_threshold(sorted_scores: np.ndarray, target_fpr: float) -> float | None:
    """SPOT's quantile: t + σ/ξ ((q n / N_t)^-ξ - 1) over the top peaks; None when too few scores
    or when the target lies inside the peaks (then the empirical quantile is as good)."""
    n = len(sorted_scores)
    n_peaks = max(MIN_PEAKS, int(round(PEAK_SHARE * n)))
    if n <= n_peaks or target_fpr * n >= n_peaks:
        return None
    initial = float(sorted_scores[n - n_peaks - 1])
    peaks = sorted_scores[n - n_peaks:] - initial
    fitted = gpd_by_moments(peaks)
    if fitted is None:
        return initial
    shape, scale = fitted
    ratio = target_fpr * n / n_peaks
    if abs(shape) < 1e-6:
        return initial - scale * math.log(ratio)
    return initial + scale / shape * (ratio ** -shape - 1)


def gpd_by_moments(sorted_peaks: np.ndarray) -> tuple[float, float] | None:
    """(shape ξ, scale σ) of a generalised Pareto distribution by probability-weighted moments;
    None when the peaks are all equal."""
    n = len(sorted_peaks)
    a0 = float(sorted_peaks.mean())
    a1 = float(np.mean((1 - (np.arange(1, n + 1) - 0.35) / n) * sorted_peaks))
    if a0 <= 2 * a1 or a0 <= 0:
        return None
    return 2 - a0 / (a0 - 2 * a1), 2 * a0 * a1 / (a0 - 2 * a1)


def rescale_training_scores(held_out: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Training-window scores moved up to the held-out level: multiplied by the ratio of the
    medians when every score is positive (a reconstruction error), else shifted by their
    difference; never moved down, since a model scores its own training windows no worse than
    unseen ones (a ratio below 1 on ~30 held-out scores is noise)."""
    held_out, training = np.asarray(held_out, np.float64), np.asarray(training, np.float64)
    if not len(held_out) or not len(training):
        return training
    if held_out.min() > 0 and training.min() > 0:
        return training * max(1.0, float(np.median(held_out) / np.median(training)))
    return training + max(0.0, float(np.median(held_out) - np.median(training)))


def clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Exact binomial interval of a rate from ``successes`` of ``trials``."""
    from scipy.stats import beta  # here, not at the top: a scorer imports this module for pot_threshold only

    alpha = 1 - confidence
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return lo, hi
