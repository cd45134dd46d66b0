import json

import numpy as np
import pytest
import torch

from agad_stream import AGAD, CheckpointError, NotFittedError

TINY = dict(channels=(4, 8, 16), latent_dim=8, epochs=2, batch_size=32, verbose=False, device="cpu")


def sine_windows(n: int, length: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length, dtype=np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    return (np.sin(2 * np.pi * 3 * t + phase) + 0.05 * rng.standard_normal((n, length))).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    return AGAD(random_state=0, **TINY).fit(sine_windows(200))


def test_rank_two_input_is_promoted_to_one_channel(fitted):
    assert fitted.window_shape_ == (1, 64)
    assert fitted.score_samples(sine_windows(5, seed=1)).shape == (5,)
    assert fitted.residuals(sine_windows(5, seed=1)).shape == (5, 1, 64)


def test_predict_and_decision_function_agree_with_the_threshold(fitted):
    X = np.concatenate([sine_windows(20, seed=2), 3 * np.random.default_rng(3).standard_normal((20, 64))])
    scores = fitted.score_samples(X)
    assert np.allclose(fitted.decision_function(X), scores - fitted.threshold_)
    assert np.array_equal(fitted.predict(X), (scores > fitted.threshold_).astype(np.int8))
    assert fitted.predict(X)[20:].mean() > fitted.predict(X)[:20].mean()


def test_threshold_is_the_calibration_quantile_at_the_target_rate(fitted):
    assert len(fitted.calibration_scores_) == 200  # 20 held out, 180 training windows rescaled
    assert np.mean(fitted.calibration_scores_ > fitted.threshold_) <= fitted.target_fpr


def test_residuals_are_input_minus_reconstruction(fitted):
    X = sine_windows(4, seed=4)[:, None]
    assert np.allclose(fitted.reconstruct(X) + fitted.residuals(X), X, atol=1e-5)


def test_same_seed_gives_the_same_model_on_cpu():
    X = sine_windows(100)
    a = AGAD(random_state=7, **TINY).fit(X).score_samples(X)
    b = AGAD(random_state=7, **TINY).fit(X).score_samples(X)
    assert np.array_equal(a, b)


def test_supervised_fit_with_labelled_anomalies_for_both_anomaly_losses():
    X = np.concatenate([sine_windows(120), np.random.default_rng(1).standard_normal((12, 64)).astype(np.float32)])
    y = np.r_[np.zeros(120), np.ones(12)]
    for loss in ("reciprocal", "margin"):
        model = AGAD(random_state=0, anomaly_loss=loss, **TINY).fit(X, y)
        assert "L_a" in model.history_[-1] and np.isfinite(model.history_[-1]["L_a"])


def test_tensor_input_is_accepted(fitted):
    X = sine_windows(3, seed=5)
    assert np.allclose(fitted.score_samples(torch.from_numpy(X)), fitted.score_samples(X))


def test_checkpoint_round_trip_gives_identical_scores(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = AGAD.load(tmp_path / "model", device="cpu")
    X = sine_windows(10, seed=6)
    assert np.array_equal(loaded.score_samples(X), fitted.score_samples(X))
    assert loaded.threshold_ == fitted.threshold_
    assert tuple(loaded.channels) == (4, 8, 16)


def test_tampered_checkpoint_is_refused(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    weights = tmp_path / "model" / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        AGAD.load(tmp_path / "model")


def test_truncated_checkpoint_is_refused(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    weights = tmp_path / "model" / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="changed or truncated"):
        AGAD.load(tmp_path / "model")


def test_shape_mismatched_checkpoint_is_refused(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    meta_path = tmp_path / "model" / "agad.json"
    meta = json.loads(meta_path.read_text())
    meta["architecture"]["channels"] = [4, 8, 32]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        AGAD.load(tmp_path / "model")


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        AGAD.load(tmp_path)


@pytest.mark.parametrize("bad,message", [
    (np.full((3, 64), np.nan), "NaN or inf"),
    (np.full((3, 64), np.inf), "NaN or inf"),
    (np.zeros((3, 1, 2, 2, 64)), "rank"),
    (np.zeros(64), "rank"),
    (np.zeros((3, 50)), "fitted on"),
    (np.zeros((0, 64)), "empty"),
    (np.array([["a"] * 64] * 3), "numeric"),
])
def test_bad_inputs_are_rejected_with_the_problem_named(fitted, bad, message):
    with pytest.raises(ValueError, match=message):
        fitted.score_samples(bad)


def test_bad_labels_and_parameters_are_rejected():
    X = sine_windows(40)
    with pytest.raises(ValueError, match="labels for"):
        AGAD(**TINY).fit(X, np.zeros(3))
    with pytest.raises(ValueError, match="only 0"):
        AGAD(**TINY).fit(X, np.full(40, 2))
    with pytest.raises(ValueError, match="epochs"):
        AGAD(**{**TINY, "epochs": 0}).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        AGAD(**TINY).fit(np.full((10, 64), np.nan))


def test_scoring_before_fit_says_so():
    with pytest.raises(NotFittedError, match="not fitted"):
        AGAD().score_samples(sine_windows(2))


def test_max_steps_is_the_budget_without_early_stopping():
    model = AGAD(random_state=0, **{**TINY, "epochs": None}, max_steps=7, early_stopping=False).fit(sine_windows(100))
    assert model.n_steps_ == 7 and model.best_step_ == 7
    assert model.history_[-1]["step"] == 7


def test_early_stopping_keeps_the_best_validation_step():
    model = AGAD(random_state=0, **{**TINY, "epochs": None}, max_steps=2000, validation_interval=5,
                 n_iter_no_change=3).fit(sine_windows(100))
    checks = {h["step"]: h["val_L_con"] for h in model.history_}
    assert model.n_steps_ < 2000, "validation loss of a tiny model on sines must stop improving long before 2000 steps"
    assert checks[model.best_step_] == min(checks.values())


@pytest.mark.parametrize("order", ["g_first", "d_first"])
def test_both_update_orders_train(order):
    model = AGAD(random_state=0, update_order=order, **TINY).fit(sine_windows(100))
    assert all(np.isfinite(h["L_G"]) and np.isfinite(h["L_D"]) for h in model.history_)


def test_history_records_each_terms_share_of_the_generator_loss():
    record = AGAD(random_state=0, **TINY).fit(sine_windows(100)).history_[-1]
    shares = [record[f"share_{term}"] for term in ("L_adv", "L_con", "L_adcon", "L_lat")]
    assert all(0 <= s <= 1 for s in shares) and sum(shares) == pytest.approx(1.0)


def test_labelled_anomalies_per_batch_are_min_32_and_available_whatever_the_batch_size():
    rng = np.random.default_rng(0)
    model = AGAD(batch_size=8)
    model.batch_size_ = 8
    for available, expected in ((50, 32), (5, 5)):
        batches = model._batches(np.arange(100), np.arange(100, 100 + available), rng)
        for _ in range(20):
            normal_idx, anomaly_idx = next(batches)
            assert len(normal_idx) == 8 and len(anomaly_idx) == expected
            assert set(anomaly_idx) <= set(range(100, 100 + available))


def test_warm_start_continues_from_the_fitted_weights_and_normalisation():
    X = sine_windows(120)
    model = AGAD(random_state=0, **TINY).fit(X)
    mean, before = model.mean_.copy(), model.score_samples(X)
    generator = model.generator_
    model.set_params(warm_start=True, epochs=1)
    model.fit(2 * X)   # new data on another scale: a warm start keeps the old normalisation
    assert model.generator_ is generator and np.array_equal(model.mean_, mean)
    assert not np.array_equal(model.score_samples(X), before)
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(sine_windows(50, length=32))


def test_unetpp_generator_passes_the_estimator_contract(tmp_path):
    X = sine_windows(100)
    model = AGAD(random_state=0, generator="unetpp", **TINY).fit(X)
    model.save(tmp_path / "model")
    loaded = AGAD.load(tmp_path / "model")
    assert np.allclose(loaded.score_samples(X), model.score_samples(X), atol=1e-5)
    assert loaded.residuals(X[:3]).shape == (3, 1, 64)


def test_auto_architecture_is_stored_with_the_checkpoint(tmp_path):
    model = AGAD(random_state=0, max_steps=3, verbose=False, device="cpu").fit(sine_windows(60))
    assert model.channels_ == (32, 64, 128) and model.latent_dim_ == 16
    model.save(tmp_path / "model")
    loaded = AGAD.load(tmp_path / "model")
    assert loaded.channels == "auto" and loaded.channels_ == model.channels_ and loaded.latent_dim_ == 16


def test_progress_bar_stays_off_when_stderr_is_not_a_terminal(capsys):
    AGAD(random_state=0, **{**TINY, "verbose": True}).fit(sine_windows(100))
    assert "step" not in capsys.readouterr().err
