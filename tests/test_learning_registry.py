"""The registry's metadata, decision log, atomic pointer and removal (the core, no Kafka)."""

import json
import time

import pytest

from agad_stream import ModelRegistry
from agad_stream.model_registry import LOG_FILE


def model_dir(path, text):
    path.mkdir()
    (path / "agad.json").write_text(text)
    return path


def test_metadata_is_written_with_the_version_and_updated_atomically(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    before = time.time()
    version = registry.publish(model_dir(tmp_path / "a", "A"), metadata={"parent": None, "labels": 3})
    published = registry.metadata(version).pop("published_at")
    assert before <= published <= time.time()
    assert registry.metadata(version) == {"published_at": published, "parent": None, "labels": 3}
    assert registry.update_metadata(version, decision="promoted") == {
        "published_at": published, "parent": None, "labels": 3, "decision": "promoted"}
    assert registry.metadata(version)["decision"] == "promoted"
    assert not [p.name for p in registry.path(version).iterdir() if p.name.startswith(".")]


def test_log_is_append_only_and_skips_a_torn_last_line(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.append_log({"event": "promoted", "version": 2})
    registry.append_log({"event": "rejected", "version": 3, "reasons": ["AUROC fell"]})
    with open(registry.root / LOG_FILE, "a") as log:
        log.write('{"event": "promo')  # a crash in the middle of a write
    entries = registry.read_log()
    assert [e["event"] for e in entries] == ["promoted", "rejected"]
    assert entries[1]["reasons"] == ["AUROC fell"] and entries[0]["time"] > 0
    (registry.root / LOG_FILE).write_text('garbage\n{"event": "x"}\n')
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        registry.read_log()


def test_a_failure_before_the_rename_leaves_no_version(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dir(tmp_path / "a", "A"))

    def crash(staging):
        assert json.loads((staging / "metadata.json").read_text())["parent"] == 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        registry.publish(model_dir(tmp_path / "b", "B"), metadata={"parent": 1}, before_rename=crash)
    assert registry.versions() == [1] and registry.current_version() == 1


def test_remove_refuses_the_current_version(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(model_dir(tmp_path / "a", "A"))
    registry.publish(model_dir(tmp_path / "b", "B"))
    with pytest.raises(ValueError, match="version 2 is current"):
        registry.remove(2)
    registry.remove(1)
    assert registry.versions() == [2]
    assert [p.name for p in registry.versions_dir.iterdir()] == ["0002"]
    with pytest.raises(FileNotFoundError, match="version 1"):
        registry.remove(1)
