"""`agad-stream models`: a version that fails to load is never made current; rollback follows the
log; list says when each version was published; the reference windows must fit the model."""

import json
import os
import shutil
import time

import numpy as np
import pytest

from agad_stream import ModelRegistry
from pipelines.cli import main as cli_main
from pipelines.learning.reference import load_reference

pytest_plugins = ["kafka_support"]  # model_dirs: two tiny trained ECG models (no broker needed)


def models(registry, *args) -> int:
    return cli_main(["models", "--model-registry", str(registry.root), *args])


@pytest.fixture
def registry(model_dirs, tmp_path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dirs[0])
    registry.publish(model_dirs[1])
    broken = shutil.copytree(model_dirs[1], tmp_path / "broken")
    weights = broken / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    registry.publish(broken, make_current=False)
    return registry


def test_promote_and_rollback_switch_versions_and_log_them(registry, capsys):
    assert models(registry, "promote", "1") == 0
    assert registry.current_version() == 1
    assert models(registry, "rollback") == 0  # back to the version current before
    assert registry.current_version() == 2
    assert [(e["event"], e["version"], e["previous"]) for e in registry.read_log()] == [
        ("manual_promote", 1, 2), ("rollback", 2, 1)]
    capsys.readouterr()
    assert models(registry, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line[0] for line in lines] == [" ", "*", " "]
    assert models(registry, "show", "2") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["current"] is True and [e["event"] for e in shown["log"]] == ["rollback"]


def test_a_version_that_fails_to_load_is_never_made_current(registry, capsys):
    assert models(registry, "promote", "3") == 2
    assert "weights.pt" in capsys.readouterr().err
    assert models(registry, "rollback", "--to", "3") == 2
    assert registry.current_version() == 2 and registry.read_log() == []
    assert models(registry, "rollback") == 2  # nothing in the log says what came before
    assert "use --to V" in capsys.readouterr().err


def test_prune_keeps_the_newest_and_the_current(registry, capsys):
    assert models(registry, "promote", "1") == 0
    assert models(registry, "prune", "--keep", "1") == 0
    assert registry.versions() == [1, 3]  # 3 is the newest, 1 is current
    assert [e["event"] for e in registry.read_log()][-1] == "pruned"
    assert models(registry, "prune", "--keep", "0") == 2


def test_list_shows_when_a_version_was_published_not_when_it_was_trained(model_dirs, tmp_path, capsys):
    trained = shutil.copytree(model_dirs[0], tmp_path / "trained-long-ago")
    os.utime(trained, (1e9, 1e9))  # September 2001
    before = time.time()
    assert cli_main(["publish", "--model", str(trained), "--model-registry", str(tmp_path / "registry")]) == 0
    after = time.time()
    capsys.readouterr()
    assert models(ModelRegistry(tmp_path / "registry"), "list") == 0
    shown = capsys.readouterr().out.split()
    published = time.mktime(time.strptime(f"{shown[2]} {shown[3]}", "%Y-%m-%d %H:%M:%S"))
    assert int(before) <= published <= after, shown


def test_reference_windows_must_fit_the_current_model_and_can_be_replaced(model_dirs, ecg_windows, tmp_path, capsys):
    """[N, L] is the natural shape of one-channel windows (a UCR file): taken as [N, 1, L]. Any
    other shape is refused before anything is stored, so the next retrain cannot fail on it."""
    registry = ModelRegistry(tmp_path / "registry")
    normals = ecg_windows.X[ecg_windows.y == 0]  # [156, 1, 288]

    def reference(windows, *extra) -> int:
        np.save(tmp_path / "normals.npy", windows)
        return models(registry, "reference", "--windows", str(tmp_path / "normals.npy"), *extra)

    assert reference(normals[:, 0]) == 2
    assert "publish a model first" in capsys.readouterr().err
    registry.publish(model_dirs[0])
    for wrong in (normals[:, 0, :140], np.repeat(normals, 2, axis=1)):
        assert reference(wrong) == 2
        error = capsys.readouterr().err
        assert f"shape {list(wrong.shape)}" in error and "[N, 1, 288] or [N, 288]" in error, error
        assert not (registry.root / "reference").exists()
    assert reference(normals[:, 0]) == 0
    assert "stored 125 reference training and 31 validation normal windows [1, 288]" in capsys.readouterr().out
    train, validation = load_reference(registry, (1, 288))
    assert train.shape == (125, 1, 288) and validation.shape == (31, 1, 288)
    assert reference(normals[:100]) == 2
    assert "they are stored once (--replace stores a new set)" in capsys.readouterr().err
    assert reference(normals[:100], "--replace") == 0
    train, validation = load_reference(registry, (1, 288))
    assert len(train) == 80 and len(validation) == 20 and registry.read_log()[-1]["event"] == "reference_replaced"
    with pytest.raises(ValueError, match=r"have shape \[1, 288\], but the current model takes \[1, 140\]"):
        load_reference(registry, (1, 140))
