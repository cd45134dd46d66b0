"""`agad-stream models`: a version that fails to load is never made current; rollback follows the log."""

import json
import shutil

import pytest

from agad_stream import ModelRegistry
from pipelines.cli import main as cli_main

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
