"""`agad-stream score --preset`: the latency and throughput knobs reach the scorer's config."""

import pytest

from pipelines.cli import build_parser
from pipelines.streaming.command import PRESETS, config_from_args

REQUIRED = ["score", "--model", "m", "--in-topic", "a", "--out-topic", "b", "--dlq-topic", "c", "--group", "g"]


def config(*options: str):
    return config_from_args(build_parser().parse_args([*REQUIRED, *options]))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_a_preset_sets_every_knob(preset):
    chosen = config("--preset", preset)
    assert {knob: getattr(chosen, knob) for knob in PRESETS[preset]} == PRESETS[preset]


def test_the_default_is_throughput_and_single_knobs_override_it():
    assert config().max_batch == PRESETS["throughput"]["max_batch"]
    tuned = config("--preset", "latency", "--max-batch", "32", "--fetch-max-wait-ms", "0")
    assert (tuned.max_batch, tuned.max_wait_ms, tuned.fetch_max_wait_ms, tuned.linger_ms) == (32, 5, 0, 0)


def test_a_negative_wait_is_refused():
    with pytest.raises(ValueError, match="--linger-ms >= 0"):
        config("--linger-ms", "-1")
