"""Model serving for the Kafka scorer, without a broker: registry hot reload and raw window shapes."""

import json
import shutil

import numpy as np
import pytest

pytest.register_assert_rewrite("kafka_support")

from agad_stream import ModelRegistry  # noqa: E402
from modalities import get_modality  # noqa: E402
from pipelines.cli import main as cli_main  # noqa: E402
from pipelines.streaming.serving import ModelSource, resolve_raw_shape  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: model_dirs, ecg_windows


def test_exactly_one_model_source():
    with pytest.raises(ValueError):
        ModelSource()
    with pytest.raises(ValueError):
        ModelSource(model_dir="a", registry="b")


def test_empty_registry_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="publish a model first"):
        ModelSource(registry=tmp_path, device="cpu").load()


def test_registry_hot_reload_skips_a_broken_version(model_dirs, ecg_windows, tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dirs[0])
    source = ModelSource(registry=registry.root, device="cpu")
    assert source.load().version == 1
    assert not source.refresh()

    broken = tmp_path / "broken"
    shutil.copytree(model_dirs[1], broken)
    (broken / "weights.pt").write_bytes(b"not a checkpoint")
    registry.publish(broken)
    assert not source.refresh() and source.current.version == 1  # logged, skipped, still serving v1
    assert not source.refresh()  # and not retried on every batch

    registry.publish(with_unknown_modality_key(model_dirs[1], tmp_path / "unknown-key"))
    assert not source.refresh() and source.current.version == 1  # a TypeError inside: skipped all the same

    registry.publish(model_dirs[1])
    assert source.refresh() and source.current.version == 4
    scores, residuals = source.current.score(ecg_windows.X[:4])
    assert scores.shape == (4,) and residuals.shape == ecg_windows.X[:4].shape


def with_unknown_modality_key(model_dir, copy):
    """A copy of a model directory whose modality.json has a setting ECGModality does not know."""
    shutil.copytree(model_dir, copy)
    settings = json.loads((copy / "modality.json").read_text())
    settings["params"]["no_such_setting"] = 1
    (copy / "modality.json").write_text(json.dumps(settings))
    return copy


def test_a_bad_model_at_startup_fails_with_one_clear_line(model_dirs, tmp_path, capsys):
    bad = with_unknown_modality_key(model_dirs[0], tmp_path / "bad")
    code = cli_main(["score", "--model", str(bad), "--in-topic", "i", "--out-topic", "o", "--dlq-topic", "d",
                     "--group", "g", "--device", "cpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(lines) == 1, lines
    assert lines[0].startswith(f"agad-stream score: error: cannot serve model version bad from {bad}: TypeError: ")
    assert "no_such_setting" in lines[0]


def test_fixed_model_is_named_after_its_directory(model_dirs):
    source = ModelSource(model_dir=model_dirs[0], device="cpu")
    served = source.load()
    assert served.version == model_dirs[0].name and served.raw_shape == (1, 288)
    assert not source.refresh()


def test_raw_shape_sizes_left_open_come_from_the_model():
    modality = get_modality("array")
    assert resolve_raw_shape(modality, (3, 100)) == (3, 100)
    modality.n_channels_, modality.length_ = 2, 50
    assert resolve_raw_shape(modality, (2, 50)) == (2, 50)
    assert np.prod(resolve_raw_shape(get_modality("ecg", leads=[0, 1]), (2, 288))) == 576
