import pytest
import torch

from agad_stream import losses
from agad_stream.training import TrainingConfig

from test_core_batchnorm import make_trainer


def test_contextual_loss_is_zero_for_a_perfect_reconstruction_and_positive_otherwise():
    x = torch.randn(4, 1, 10)
    assert losses.l_con(x, x) == 0
    assert losses.l_con(x, x + 1) == pytest.approx(1.0)


def test_adversarial_contextual_loss_rewards_a_failed_pseudo_anomaly_reconstruction():
    x_hat = torch.randn(4, 1, 10)
    assert losses.l_adcon(x_hat, x_hat) == 0
    assert losses.l_adcon(x_hat, x_hat + 2) < losses.l_adcon(x_hat, x_hat + 1) < 0


def test_adversarial_loss_falls_as_the_discriminator_believes_the_reconstruction():
    assert losses.l_adv(torch.full((4,), 5.0)) < losses.l_adv(torch.full((4,), -5.0))


def test_latent_loss_is_a_squared_feature_distance():
    z = torch.zeros(2, 3)
    assert losses.l_lat(z, z + 2) == pytest.approx(4.0)


def test_reciprocal_anomaly_loss_falls_as_each_distance_grows():
    y_hat = torch.zeros(4)
    x_hat, z = torch.zeros(4, 1, 8), torch.zeros(4, 5)
    near = losses.l_a_reciprocal(y_hat, x_hat, x_hat + 0.1, z, z + 0.1, 1, 15, 5)
    far = losses.l_a_reciprocal(y_hat, x_hat, x_hat + 1.0, z, z + 1.0, 1, 15, 5)
    assert far < near
    assert torch.isfinite(losses.l_a_reciprocal(y_hat, x_hat, x_hat, z, z, 1, 15, 5))


def test_margin_anomaly_loss_is_bounded_and_zero_beyond_the_margin():
    x = torch.zeros(4, 1, 8)
    assert losses.l_a_margin(x, x, 50, 1.0) == pytest.approx(50.0)
    assert losses.l_a_margin(x, x + 2, 50, 1.0) == 0


def test_relative_margin_asks_each_anomaly_for_a_multiple_of_the_normal_error():
    x = torch.zeros(4, 1, 8)
    x_hat = x + 0.5  # normal error 0.5: a ratio of 4 asks each anomaly for an error of 2
    anomalies = torch.zeros(2, 1, 8)
    far_and_near = torch.stack([torch.full((1, 8), 3.0), torch.full((1, 8), 1.0)])
    assert losses.l_a_relative_margin(x, x_hat, anomalies, anomalies + 2, 10, 4.0) == 0
    # per window: the far one (error 3) cannot pay for the near one (error 1, one short)
    assert losses.l_a_relative_margin(x, x_hat, anomalies, far_and_near, 10, 4.0) == pytest.approx(10 * 1.0 / 2)
    assert losses.l_a_margin(anomalies, far_and_near, 10, 2.0) == 0  # the batch-mean margin is met by the far one
    x_hat.requires_grad_(True)
    far_and_near.requires_grad_(True)
    losses.l_a_relative_margin(x, x_hat, anomalies, far_and_near, 10, 4.0).backward()
    assert x_hat.grad is None  # the normal error is a yardstick, not trained here
    assert not far_and_near.grad[0].any() and (far_and_near.grad[1] < 0).all()  # only the near one is pushed up


def test_relative_margin_trains_the_generator_to_fail_on_labelled_anomalies():
    trainer = make_trainer(anomaly_loss="relative-margin", anomaly_margin=50.0, lambda_adv=0, lambda_adcon=0, lambda_lat=0)
    report = trainer.step(torch.randn(6, 1, 64), torch.randn(2, 1, 64))
    assert report["L_a"] > 0
    assert report["L_G"] == pytest.approx((6 * report["L_con"] * 50 + 2 * report["L_a"]) / 8, rel=1e-5)


@pytest.mark.parametrize("term,weight", [("L_adv", "lambda_adv"), ("L_con", "lambda_con"),
                                         ("L_adcon", "lambda_adcon"), ("L_lat", "lambda_lat")])
def test_each_term_is_switched_by_its_own_lambda(term, weight):
    only = {name: 0.0 for name in ("lambda_adv", "lambda_con", "lambda_adcon", "lambda_lat")}
    only[weight] = 3.0
    report = make_trainer(**only).step(torch.randn(8, 1, 64))
    assert report["L_G"] == pytest.approx(3.0 * report[term], rel=1e-5)
    assert report[term] != 0


def test_generator_loss_mixes_normal_and_anomaly_terms_by_count():
    trainer = make_trainer(anomaly_loss="margin", lambda_adv=0, lambda_adcon=0, lambda_lat=0, lambda_con=1)
    report = trainer.step(torch.randn(6, 1, 64), torch.randn(2, 1, 64))
    assert report["L_G"] == pytest.approx((6 * report["L_con"] + 2 * report["L_a"]) / 8, rel=1e-5)


def test_bad_training_config_is_rejected():
    with pytest.raises(ValueError, match="anomaly_loss"):
        TrainingConfig(anomaly_loss="negate")
    with pytest.raises(ValueError, match="lambda_con"):
        TrainingConfig(lambda_con=-1)
    with pytest.raises(ValueError, match="anomaly_margin"):
        TrainingConfig(anomaly_loss="relative-margin", anomaly_margin=-2)


def test_hinge_adcon_is_bounded_by_its_margin_and_zero_past_it():
    x_hat = torch.randn(4, 1, 10)
    assert losses.l_adcon_hinge(x_hat, x_hat, margin=0.5) == pytest.approx(0.5)
    assert losses.l_adcon_hinge(x_hat, x_hat + 0.2, margin=0.5) == pytest.approx(0.3)
    assert losses.l_adcon_hinge(x_hat, x_hat + 100, margin=0.5) == 0


@pytest.mark.slow  # a long training run: about 20 s
def test_bounded_adcon_stays_bounded_over_a_long_run_where_the_paper_form_runs_away():
    import numpy as np

    from agad_stream import AGAD

    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    X = np.sin(2 * np.pi * 2 * t + rng.uniform(0, 6, (128, 1))).astype(np.float32)
    common = dict(channels=(4, 8, 16), latent_dim=4, batch_size=32, max_steps=600, early_stopping=False,
                  validation_interval=50, random_state=0, verbose=False, device="cpu")
    hinge = AGAD(adcon="hinge", adcon_margin=0.5, **common).fit(X).history_
    paper = AGAD(adcon="paper", **common).fit(X).history_
    assert all(0 <= h["L_adcon"] <= 0.5 for h in hinge)
    assert all(h["L_G"] >= 0 for h in hinge), "a bounded term can never make G's loss negative"
    assert min(h["L_adcon"] for h in paper) < -0.5, "the paper's form keeps falling past any margin"
