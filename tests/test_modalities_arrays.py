"""Generic array inputs: UCR text files and .npy/.npz windows."""

import json

import numpy as np
import pytest

from modalities import load_modality
from modalities.arrays import ArrayModality


def write_ucr(path, labels, values, sep):
    lines = [sep.join([str(lab)] + [f"{v:.4f}" for v in row]) for lab, row in zip(labels, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def test_ucr_tsv_normal_label_and_classes(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(6, 20))
    write_ucr(tmp_path / "Demo_TRAIN.tsv", [1, 2, 1, 3, 1, 2], values, "\t")
    arrays = ArrayModality(normal_label=1)
    w = arrays.load(tmp_path / "Demo_TRAIN.tsv")
    assert w.X.shape == (6, 1, 20) and w.X.dtype == np.float32
    np.testing.assert_array_equal(w.y, [0, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(w.info["class"], ["1", "2", "1", "3", "1", "2"])
    np.testing.assert_allclose(w.X[:, 0], values, atol=1e-4)
    assert arrays.raw_shape == (1, 20)
    assert arrays.prepare(w.X[:, 0]).shape == (6, 1, 20)
    np.testing.assert_array_equal(arrays.prepare(w.X), w.X)
    assert set(w.group) == {"Demo_TRAIN.tsv"} and list(w.position) == list(range(6))


def test_ucr_csv_float_labels_and_unknown_labels(tmp_path):
    write_ucr(tmp_path / "d.csv", ["1.0", "-1.0", "1.0"], np.zeros((3, 4)), ",")
    assert ArrayModality(normal_label=1).load(tmp_path / "d.csv").y.tolist() == [0, 1, 0]
    assert ArrayModality().load(tmp_path / "d.csv").y is None
    write_ucr(tmp_path / "d.txt", [0, 1, 0], np.ones((3, 4)), " ")
    assert ArrayModality().load(tmp_path / "d.txt").y.tolist() == [0, 1, 0]


def test_npz_multichannel_and_npy(tmp_path):
    X = np.random.default_rng(1).normal(size=(5, 3, 16)).astype(np.float32)
    np.savez(tmp_path / "w.npz", X=X, y=np.array([0, 0, 1, 0, 1]))
    arrays = ArrayModality()
    w = arrays.load(tmp_path / "w.npz")
    assert w.X.shape == (5, 3, 16) and w.y.tolist() == [0, 0, 1, 0, 1]
    restored = load_modality(json.loads(json.dumps(arrays.to_dict())))
    assert restored.raw_shape == (3, 16)
    np.testing.assert_array_equal(restored.prepare(X[0]), X[:1])
    with pytest.raises(ValueError, match="does not match"):
        restored.prepare(np.zeros((2, 2, 16)))
    np.save(tmp_path / "w.npy", X[:, 0])
    w = ArrayModality().load(tmp_path / "w.npy")
    assert w.X.shape == (5, 1, 16) and w.y is None


def test_array_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("1,0.5,0.25\n2,0.1,abc\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2: non-numeric"):
        ArrayModality().load(tmp_path / "bad.csv")
    (tmp_path / "ragged.tsv").write_text("1\t0.5\t0.25\n2\t0.1\n")
    with pytest.raises(ValueError, match="different numbers of columns"):
        ArrayModality().load(tmp_path / "ragged.tsv")
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        ArrayModality().load(tmp_path / "missing.tsv")
    write_ucr(tmp_path / "d.tsv", [1, 2], np.zeros((2, 3)), "\t")
    with pytest.raises(ValueError, match="normal_label=7 not found"):
        ArrayModality(normal_label=7).load(tmp_path / "d.tsv")
    np.savez(tmp_path / "noX.npz", data=np.zeros(3))
    with pytest.raises(ValueError, match="no array 'X'"):
        ArrayModality().load(tmp_path / "noX.npz")
