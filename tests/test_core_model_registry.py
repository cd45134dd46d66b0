import pytest

from agad_stream import ModelRegistry


def make_model_dir(path, text):
    path.mkdir()
    (path / "agad.json").write_text(text)
    return path


def test_publish_numbers_versions_and_switches_current(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.current_version() is None
    assert registry.publish(make_model_dir(tmp_path / "a", "A")) == 1
    assert registry.publish(make_model_dir(tmp_path / "b", "B")) == 2
    assert registry.versions() == [1, 2]
    assert registry.current_version() == 2
    assert (registry.current_path() / "agad.json").read_text() == "B"


def test_publish_without_switching_and_switching_back(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(make_model_dir(tmp_path / "a", "A"))
    registry.publish(make_model_dir(tmp_path / "b", "B"), make_current=False)
    assert registry.current_version() == 1
    registry.set_current(2)
    assert registry.current_version() == 2
    assert not list((tmp_path / "registry").glob(".current*"))


def test_unknown_version_and_empty_registry_are_clear_errors(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    with pytest.raises(FileNotFoundError, match="no current version"):
        registry.current_path()
    with pytest.raises(FileNotFoundError, match="version 3"):
        registry.set_current(3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        registry.publish(tmp_path / "missing")
