"""The gate's intervals keep their confidence, and its rule reads them as the issue's user needs:
a worse model is refused, a noisy point difference is not (issue 25: 3 -> 11 of 798 normals)."""

import numpy as np
import pytest
from scipy.stats import binom

from pipelines.learning import intervals
from pipelines.learning.gate import GateRule, Validation, decide

CONFIDENCE = 0.95


def test_wilson_matches_its_closed_form_at_the_edges():
    z2 = 1.959964 ** 2
    assert intervals.wilson(0, 10, CONFIDENCE) == pytest.approx((0.0, z2 / (10 + z2)), abs=1e-6)
    assert intervals.wilson(5, 10, CONFIDENCE) == pytest.approx((0.2366, 0.7634), abs=1e-4)  # symmetric about 1/2


def _paired_flags(rng, n, rate, agreement):
    """Two verdicts on n windows with the same true rate: the second copies the first with probability `agreement`."""
    first = rng.random(n) < rate
    second = np.where(rng.random(n) < agreement, first, rng.random(n) < rate)
    return first, second


@pytest.mark.parametrize("n, rate", [(30, 0.3), (200, 0.05), (800, 0.01)])
def test_the_paired_rate_interval_covers_an_equal_rate_as_often_as_it_promises(n, rate):
    rng = np.random.default_rng(0)
    covered = [low <= 0 <= high for low, high in
               (intervals.paired_rate_difference(*_paired_flags(rng, n, rate, 0.7), CONFIDENCE)[1:] for _ in range(2000))]
    assert np.mean(covered) >= 0.93  # nominal 0.95; Newcombe's method is a little conservative, never far below


def test_the_paired_rate_interval_finds_a_real_difference():
    rng = np.random.default_rng(1)
    current = rng.random(300) < 0.2
    candidate = current | (rng.random(300) < 0.15)  # flags everything the current model does, and more
    difference, low, high = intervals.paired_rate_difference(candidate, current, CONFIDENCE)
    assert difference == pytest.approx(candidate.mean() - current.mean())
    assert 0 < low < difference < high


def test_no_discordant_pair_still_gives_an_interval_as_wide_as_the_sample_allows():
    none = np.zeros(20, bool)
    difference, low, high = intervals.paired_rate_difference(none, none, CONFIDENCE)
    assert difference == 0 and low == pytest.approx(-intervals.wilson(0, 20, CONFIDENCE)[1]) and high > 0.1


def test_delong_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(2)
    y = np.r_[np.zeros(400), np.ones(40)].astype(int)
    shared = rng.normal(size=len(y)) + 1.2 * y  # the two models' scores are correlated, as two versions' are
    current, candidate = shared + 0.6 * rng.normal(size=len(y)), shared + 0.6 * rng.normal(size=len(y)) + 0.3 * y
    difference, low, high = intervals.paired_auroc_difference(y, candidate, current, CONFIDENCE)
    from sklearn.metrics import roc_auc_score

    assert difference == pytest.approx(roc_auc_score(y, candidate) - roc_auc_score(y, current))
    normals, anomalies = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    boot = []
    for _ in range(1000):
        i = np.r_[rng.choice(normals, len(normals)), rng.choice(anomalies, len(anomalies))]
        boot.append(roc_auc_score(y[i], candidate[i]) - roc_auc_score(y[i], current[i]))
    assert (high - low) / 2 == pytest.approx(1.96 * np.std(boot), rel=0.2)


def test_delong_covers_equal_models_as_often_as_it_promises():
    rng = np.random.default_rng(3)
    y = np.r_[np.zeros(300), np.ones(20)].astype(int)
    covered = []
    for _ in range(500):
        shared = rng.normal(size=len(y)) + y
        low, high = intervals.paired_auroc_difference(y, shared + rng.normal(size=len(y)),
                                                      shared + rng.normal(size=len(y)), CONFIDENCE)[1:]
        covered.append(low <= 0 <= high)
    assert np.mean(covered) >= 0.92


def test_normals_needed_is_the_first_count_with_the_power_it_names():
    tolerated = 0.015
    n = intervals.normals_needed(tolerated, CONFIDENCE)

    def power(count):
        critical = int(binom.isf(0.025, count, tolerated)) + 1
        return binom.sf(critical - 1, count, 2 * tolerated)

    assert power(n) >= intervals.FPR_POWER and all(power(m) < intervals.FPR_POWER for m in range(n - 50, n))
    assert intervals.normals_needed(0.15, CONFIDENCE) < n < intervals.normals_needed(0.0075, CONFIDENCE)


# --------------------------------------------------------------------------- the rule
def validation(normal_flags: int, normals: int, anomaly_flags: list[bool], seed: int) -> Validation:
    """A model's verdicts: `normal_flags` of `normals` normals above its threshold (1.0), the anomalies as given
    (one it misses scores like a normal one)."""
    rng = np.random.default_rng(seed)
    normal_scores = rng.uniform(0, 0.9, normals)
    normal_scores[rng.choice(normals, normal_flags, replace=False)] = 1.5
    anomaly_scores = np.where(anomaly_flags, 2.0, rng.uniform(0, 0.9, len(anomaly_flags)))
    y = np.r_[np.zeros(normals), np.ones(len(anomaly_flags))].astype(int)
    return Validation(np.r_[normal_scores, anomaly_scores], y, threshold=1.0, target_fpr=0.01)


def test_the_demos_candidate_passes_the_fpr_check_it_failed_by_a_point():
    anomalies = [False] * 26 + [True] * 2
    current, candidate = validation(3, 798, anomalies, 0), validation(11, 798, [False] * 24 + [True] * 4, 1)
    promote, reasons, found = decide(current, candidate, GateRule())
    fpr = next(r for r in reasons if r.startswith("FPR"))
    assert promote, reasons
    assert "11 of 798 normals" in fpr and "interval [" in fpr and "not significantly above the 0.0150 tolerated" in fpr
    assert found["fpr_difference"]["low"] > 0  # significantly above the current one: the tolerance decided


def test_an_fpr_well_above_the_tolerance_is_refused():
    anomalies = [True] * 10
    promote, reasons, _ = decide(validation(3, 798, anomalies, 0), validation(40, 798, anomalies, 1), GateRule())
    assert not promote
    assert "significantly above both the current one and the 0.0150 tolerated" in next(r for r in reasons if "FPR" in r)


def test_an_fpr_above_the_tolerance_but_no_worse_than_the_current_one_passes():
    anomalies = [True] * 10
    promote, reasons, _ = decide(validation(60, 798, anomalies, 0), validation(62, 798, anomalies, 1), GateRule())
    assert promote, reasons


def test_too_few_normals_to_judge_the_fpr_refuses_and_says_how_many_are_needed():
    anomalies = [True] * 10
    promote, reasons, _ = decide(validation(0, 300, anomalies, 0), validation(0, 300, anomalies, 1), GateRule())
    assert not promote
    assert reasons[0].startswith("only 300 validation normals") and "the rule needs 713" in reasons[0]
    assert decide(validation(0, 300, anomalies, 0), validation(0, 300, anomalies, 1),
                  GateRule(min_validation_normals=300))[0]


def test_recall_is_refused_only_when_the_fall_is_significant():
    promote, reasons, _ = decide(validation(3, 798, [True] * 9, 0), validation(3, 798, [False] * 9, 1), GateRule())
    recall = next(r for r in reasons if r.startswith("recall"))
    assert not promote and "worse by 1.000, significantly more than the 0.000 allowed" in recall
    noisy = [True] * 2 + [False] * 7
    assert decide(validation(3, 798, [True] * 3 + [False] * 6, 0), validation(3, 798, noisy, 1), GateRule())[0]
