"""Damaged files on disk, through the command line a user runs: each is a one-line error naming the file
(or a skipped entry with a warning), never a traceback."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agad_stream import ModelRegistry
from pipelines.cli import main
from pipelines.console.explain import Models
from pipelines.learning.labels import encode_confirmation, decode_confirmation
from pipelines.learning.store import LabelStore

DATA = Path(__file__).parent / "data"
RECORD = DATA / "mitdb-pvc" / "119"
TINY = ["--epochs", "1", "--channels", "8,16", "--latent-dim", "8", "--batch-size", "32", "--seed", "0",
        "--device", "cpu", "--quiet"]


def one_line_error(argv: list[str], capsys) -> str:
    """Exit status 2 and exactly one line on stderr (the error), returned."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"agad-stream {argv[0]}: error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def normals(tmp_path_factory) -> Path:
    """60 raw ECG-shaped windows [N, 1, 288] in a .npy, for `models reference` and a tiny array model."""
    path = tmp_path_factory.mktemp("normals") / "normals.npy"
    np.save(path, np.random.default_rng(0).normal(size=(60, 1, 288)).astype(np.float32))
    return path


@pytest.fixture(scope="module")
def model_dir(normals, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "array"
    assert main(["train", "--modality", "array", "--data", str(normals), "--out", str(out), *TINY]) == 0
    return out


def test_an_empty_npy_names_the_file_in_train_and_models_reference(tmp_path, model_dir, capsys):
    empty = tmp_path / "windows.npy"
    empty.write_bytes(b"")
    err = one_line_error(["train", "--modality", "array", "--data", str(empty), "--out", str(tmp_path / "m"), *TINY],
                         capsys)
    assert str(empty) in err and "empty" in err
    assert main(["publish", "--model-registry", str(tmp_path / "registry"), "--model", str(model_dir)]) == 0  # for the shape check
    err = one_line_error(["models", "--model-registry", str(tmp_path / "registry"), "reference", "--windows",
                          str(empty)], capsys)
    assert str(empty) in err and "empty" in err
    assert not (tmp_path / "registry" / "reference").exists()


def test_a_header_without_its_signal_line_names_the_header(tmp_path, capsys):
    """The header says 1 signal but has no line describing it (wfdb: TypeError on None)."""
    (tmp_path / "119.hea").write_text("119 1 360 64800\n")
    shutil.copy(RECORD.with_suffix(".dat"), tmp_path / "119.dat")
    err = one_line_error(["train", "--modality", "ecg", "--data", str(tmp_path / "119"), "--out",
                          str(tmp_path / "m"), *TINY], capsys)
    assert "119.hea" in err and "1 signal" in err and "0 signal line" in err


def test_a_truncated_dat_names_the_record_and_says_truncated(tmp_path, capsys):
    for suffix in (".hea", ".pvc"):
        shutil.copy(RECORD.with_suffix(suffix), tmp_path / f"119{suffix}")
    data = RECORD.with_suffix(".dat").read_bytes()
    (tmp_path / "119.dat").write_bytes(data[:len(data) // 2 + 1])  # wfdb: shapes could not be broadcast together
    err = one_line_error(["train", "--modality", "ecg", "--data", str(tmp_path / "119"), "--ann", "pvc", "--out",
                          str(tmp_path / "m"), *TINY], capsys)
    assert f"record {tmp_path / '119'} is truncated" in err and f"{len(data) // 2 + 1} bytes" in err
    assert f"{len(data)} bytes" in err  # what the header needs


def test_the_untouched_record_still_loads(tmp_path):
    """The size check agrees with wfdb on a good record (the header's 212 format: 1.5 bytes a sample)."""
    for suffix in (".hea", ".dat", ".pvc"):
        shutil.copy(RECORD.with_suffix(suffix), tmp_path / f"119{suffix}")
    assert main(["train", "--modality", "ecg", "--data", str(tmp_path / "119"), "--ann", "pvc", "--out",
                 str(tmp_path / "m"), *TINY]) == 0


def test_a_corrupt_label_store_names_the_file_and_what_to_do(normals, model_dir, tmp_path, capsys):
    """`retrain` on a labels.sqlite that is not a database (SQLite: file is not a database)."""
    registry = tmp_path / "registry"
    assert main(["publish", "--model", str(model_dir), "--registry", str(registry)]) == 0
    assert main(["models", "--model-registry", str(registry), "reference", "--windows", str(normals)]) == 0
    capsys.readouterr()
    store = registry / "labels.sqlite"
    store.write_bytes(os.urandom(8192))
    err = one_line_error(["retrain", "--model-registry", str(registry), "--labels-topic", "unused", "--once",
                          "--nice", "0"], capsys)
    assert f"label store {store} is corrupt" in err and "move it aside" in err and "--group" in err


def test_a_damaged_page_in_the_label_store_is_found_when_it_opens(tmp_path):
    """A store whose header is intact but a data page is overwritten: found at open, not mid-retrain."""
    path = tmp_path / "labels.sqlite"
    store = LabelStore(path)
    shape = (1, 288)
    confirmations = [(decode_confirmation(encode_confirmation(f"w{i}", i % 2, np.full(shape, float(i)), "alice"),
                                          None, shape), f"t/0/{i}") for i in range(200)]
    assert store.add(confirmations) == 200
    store.close()
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    damaged = bytearray(path.read_bytes())
    damaged[5 * page:6 * page] = np.random.default_rng(1).integers(0, 256, page, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="is corrupt"):
        LabelStore(path)


def test_stray_registry_entries_are_skipped_and_a_non_ascii_pointer_is_a_clear_error(model_dir, tmp_path, capsys,
                                                                                      caplog):
    """versions/² (str.isdigit() is true for it, int() refuses it) and `current` holding ¹."""
    registry = ModelRegistry(tmp_path / "registry")
    assert main(["publish", "--model", str(model_dir), "--registry", str(registry.root)]) == 0
    (registry.versions_dir / "²").mkdir()
    with caplog.at_level(logging.WARNING, "agad_stream.registry"):
        assert main(["models", "--model-registry", str(registry.root), "list"]) == 0
        assert main(["publish", "--model", str(model_dir), "--registry", str(registry.root)]) == 0
    assert "'²', which is not a version directory" in caplog.text
    assert registry.versions() == [1, 2] and registry.current_version() == 2
    capsys.readouterr()
    (registry.root / "current").write_text("¹\n")
    for argv in (["models", "--model-registry", str(registry.root), "list"],
                 ["score", "--model-registry", str(registry.root), "--in-topic", "i", "--out-topic", "o",
                  "--dlq-topic", "d", "--group", "g", "--device", "cpu"]):
        err = one_line_error(argv, capsys)
        assert f"{registry.root / 'current'} should hold a version number" in err and "'¹'" in err, err
    assert main(["models", "--model-registry", str(registry.root), "promote", "1"]) == 0  # the repair it names
    assert registry.current_version() == 1
    assert json.loads((registry.root / "registry-log.jsonl").read_text().splitlines()[-1])["previous"] is None
    with pytest.raises(ValueError, match="'²' is not in registry"):  # a review message's model_version, in the console
        Models(registry=registry.root).get("²")
