"""Thresholds from few normal scores: the tail model, the FPR interval, the warning, and the checkpoint."""

import json
import math

import numpy as np
import pytest
from scipy.stats import binomtest, genpareto

from agad_stream import AGAD
from agad_stream.calibration import calibrate, clopper_pearson, gpd_by_moments, rescale_training_scores
from agad_stream.checkpoint import load_checkpoint, save_checkpoint

TINY = dict(channels=(4, 8, 16), latent_dim=8, max_steps=20, batch_size=16, verbose=False, device="cpu")


def sine_windows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    return (np.sin(2 * np.pi * 3 * t + rng.uniform(0, 2 * np.pi, (n, 1))) + 0.05 * rng.standard_normal((n, 32))
            ).astype(np.float32)


def test_29_scores_give_their_maximum_and_an_honest_interval():
    scores = np.random.default_rng(0).lognormal(2, 0.3, 29)
    result = calibrate(scores, 0.01, "empirical")
    assert result.threshold == scores.max() and result.exceedances == 0
    assert result.expected_fpr == pytest.approx(1 / 30)
    assert result.fpr_interval[1] == pytest.approx(1 - 0.025 ** (1 / 29))
    assert not result.supported and result.windows_needed == 1000
    assert "about 1000 normal windows would" in result.shortfall()


def test_clopper_pearson_matches_scipys_exact_interval():
    for successes, trials in ((0, 29), (3, 300), (12, 1000), (50, 50)):
        expected = binomtest(successes, trials).proportion_ci(0.95, method="exact")
        assert clopper_pearson(successes, trials, 0.95) == pytest.approx((expected.low, expected.high))


def test_probability_weighted_moments_recover_a_generalised_pareto():
    for shape in (-0.2, 0.0, 0.3):
        peaks = np.sort(genpareto.rvs(shape, scale=2.0, size=20_000, random_state=1))
        fitted_shape, fitted_scale = gpd_by_moments(peaks)
        assert fitted_shape == pytest.approx(shape, abs=0.05) and fitted_scale == pytest.approx(2.0, rel=0.05)


def test_the_pot_tail_keeps_the_target_where_the_empirical_quantile_of_few_scores_does_not():
    rng = np.random.default_rng(3)
    achieved = {"empirical": [], "pot": []}
    fresh = rng.lognormal(2, 0.3, 200_000)
    for _ in range(200):
        scores = rng.lognormal(2, 0.3, 300)
        for tail in achieved:
            achieved[tail].append(np.mean(fresh > calibrate(scores, 0.01, tail).threshold))
    assert 0.007 < np.mean(achieved["pot"]) < 0.015 and 0.007 < np.mean(achieved["empirical"]) < 0.015
    few = [np.mean(fresh > calibrate(rng.lognormal(2, 0.3, 29), 0.01, "empirical").threshold) for _ in range(200)]
    assert np.mean(few) > 0.025  # the maximum of 29: 1/30 expected, whatever the tail says


def test_training_scores_lifted_to_the_held_out_level_keep_the_target_that_30_held_out_scores_miss():
    rng = np.random.default_rng(3)
    fresh = rng.lognormal(2, 0.3, 200_000)
    achieved = {"holdout": [], "holdout+training": []}
    for _ in range(200):
        held_out, overfit_training = rng.lognormal(2, 0.3, 30), 0.8 * rng.lognormal(2, 0.3, 270)
        pools = {"holdout": held_out,
                 "holdout+training": np.r_[held_out, rescale_training_scores(held_out, overfit_training)]}
        for name, pool in pools.items():
            achieved[name].append(np.mean(fresh > calibrate(pool, 0.01, "pot").threshold))
    assert 0.008 < np.mean(achieved["holdout+training"]) < 0.015
    assert np.std(achieved["holdout+training"]) < np.std(achieved["holdout"]) / 2


def test_training_scores_are_rescaled_up_never_down_and_shifted_when_a_score_can_be_negative():
    training = np.array([1.0, 2.0, 3.0])
    assert np.allclose(rescale_training_scores(np.array([4.0, 6.0]), training), 2.5 * training)
    assert np.allclose(rescale_training_scores(np.array([0.5, 1.0]), training), training)
    assert np.allclose(rescale_training_scores(np.array([-1.0, 5.0]), training - 2), training - 2 + 2)


def test_unknown_tail_is_named():
    with pytest.raises(ValueError, match="threshold tail"):
        calibrate([1.0, 2.0], 0.01, "gauss")
    with pytest.raises(ValueError, match="calibration must be one of"):
        AGAD(calibration="loo", **TINY).fit(sine_windows(40))


def test_cross_fit_scores_every_normal_window_and_the_report_lands_in_agad_json(tmp_path):
    X = sine_windows(60)
    with pytest.warns(UserWarning, match="60 calibration windows cannot support target_fpr=0.01.*1000 normal windows"):
        model = AGAD(calibration="cross-fit", calibration_folds=3, random_state=0, **TINY).fit(X)
    assert len(model.calibration_scores_) == 60 and model.calibration_["scores_from"] == {"holdout": 6, "cross-fit": 54}
    assert model.calibration_["threshold"] == model.threshold_
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "agad.json").read_text())["calibration"]
    lo, hi = saved["fpr_interval"]
    assert saved["n_scores"] == 60 and 0 <= lo <= saved["expected_fpr"] <= hi <= 1
    assert AGAD.load(tmp_path / "m").calibration_ == saved


def test_the_default_adds_the_rescaled_training_scores_and_the_holdout_warning_points_to_it():
    model = AGAD(random_state=0, **TINY)
    with pytest.warns(UserWarning, match="60 calibration windows cannot support"):
        model.fit(sine_windows(60))
    assert model.calibration_["scores_from"] == {"holdout": 6, "training, rescaled": 54}
    held_out = model.calibration_scores_[:6]
    assert np.median(model.calibration_scores_[6:]) >= np.median(held_out) * (1 - 1e-6)
    with pytest.warns(UserWarning, match="calibration='holdout\\+training' scores every normal training window"):
        AGAD(calibration="holdout", random_state=0, **TINY).fit(sine_windows(60))


def test_a_checkpoint_from_before_the_calibration_report_still_loads(tmp_path):
    with pytest.warns(UserWarning):
        model = AGAD(random_state=0, **TINY).fit(sine_windows(60))
    model.save(tmp_path / "new")
    state, metadata = load_checkpoint(tmp_path / "new")
    del metadata["calibration"]
    for name in ("calibration", "calibration_folds", "threshold_tail"):
        del metadata["params"][name]
    metadata["threshold"] = float(np.max(metadata["calibration_scores"]))  # the old rule: the "higher" quantile
    save_checkpoint(tmp_path / "old", state, metadata)
    old = AGAD.load(tmp_path / "old")
    assert old.threshold_ == metadata["threshold"] and old.calibration_["tail"] == "empirical"
    assert old.calibration_["expected_fpr"] == pytest.approx(1 / (len(metadata["calibration_scores"]) + 1))
    assert math.isclose(old.score_samples(sine_windows(3, seed=1))[0], model.score_samples(sine_windows(3, seed=1))[0])
