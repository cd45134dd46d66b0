"""The AGAD constructor and TrainingConfig share one set of loss defaults, and every training
parameter given to AGAD reaches the trainer."""

from dataclasses import fields

from agad_stream import AGAD
from agad_stream.training import TrainingConfig

#: a valid value other than the default for each training parameter AGAD takes
CHANGED = {"lr": 1e-3, "lambda_adv": 2.0, "lambda_con": 7.0, "lambda_adcon": 3.0, "lambda_lat": 0.0,
           "adcon": "paper", "adcon_margin": 0.3, "adcon_warmup_steps": 11, "update_order": "d_first",
           "aux_bn": False, "aux_bn_mode": "frozen", "freeze_bn": False, "anomaly_loss": "reciprocal",
           "anomaly_margin": 2.5}


def test_agad_defaults_are_the_training_config_defaults():
    shared = {f.name for f in fields(TrainingConfig)} & set(AGAD().get_params())
    assert shared == set(CHANGED)  # a new shared parameter needs a line in CHANGED
    defaults = TrainingConfig()
    assert {name: AGAD().get_params()[name] for name in shared} == {name: getattr(defaults, name) for name in shared}


def test_every_training_parameter_reaches_the_training_config():
    config = AGAD(**CHANGED)._training_config()
    assert {name: getattr(config, name) for name in CHANGED} == CHANGED
    assert AGAD()._training_config() == TrainingConfig()
