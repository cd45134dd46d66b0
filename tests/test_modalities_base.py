"""Windows container, group split, registry."""

import json

import numpy as np
import pytest

from modalities import Windows, available_modalities, get_modality, load_modality, split_by_group


def make_windows(n=8, labelled=True):
    return Windows(
        X=np.arange(n * 4, dtype=np.float64).reshape(n, 1, 4),
        y=(np.arange(n) % 2) if labelled else None,
        source=[f"rec{i // 2}" for i in range(n)],
        group=[f"rec{i // 2}" for i in range(n)],
        position=np.arange(n) * 10,
        info={"symbol": np.array(list("NVNVNVNV"[:n]))},
    )


def test_windows_types_subset_concat():
    w = make_windows()
    assert w.X.dtype == np.float32 and w.y.dtype == np.int8 and w.position.dtype == np.int64 and len(w) == 8
    sub = w.subset(w.y == 1)
    assert len(sub) == 4 and set(sub.info["symbol"]) == {"V"}
    assert w.subset([0, 3]).position.tolist() == [0, 30]
    both = Windows.concat([w, sub])
    assert len(both) == 12 and both.info["symbol"].shape == (12,)
    with pytest.raises(ValueError, match="labelled and unlabelled"):
        Windows.concat([w, make_windows(labelled=False)])
    with pytest.raises(ValueError, match="length 3"):
        Windows(X=np.zeros((2, 4)), y=None, source=["a"] * 3, group=["a"] * 2, position=[0, 1])
    with pytest.raises(ValueError, match="only 0"):
        Windows(X=np.zeros((1, 4)), y=[2], source=["a"], group=["a"], position=[0])


def test_split_by_group_never_leaks():
    w = make_windows()
    for seed in range(5):
        train, test = split_by_group(w, test_fraction=0.5, random_state=seed)
        assert not set(train.group) & set(test.group)
        assert len(train) + len(test) == len(w) and len(train) and len(test)
    train, test = split_by_group(w, test_groups=["rec1"])
    assert set(test.group) == {"rec1"} and "rec1" not in train.group
    with pytest.raises(ValueError, match="not found"):
        split_by_group(w, test_groups=["nope"])


def test_registry():
    assert available_modalities() == ["array", "audio", "ecg", "image"]
    ecg = get_modality("ecg", window_s=1.0)
    d = json.loads(json.dumps(ecg.to_dict()))
    assert d["name"] == "ecg" and load_modality(d).get_params() == ecg.get_params()
    with pytest.raises(ValueError, match="unknown modality"):
        get_modality("video")
    with pytest.raises(ValueError, match="not 'ecg'"):
        type(ecg).from_dict({"name": "image"})
