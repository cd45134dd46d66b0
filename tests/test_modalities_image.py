"""Image modality: IDX reading (Fashion-MNIST layout), labels, resizing, errors."""

import json

import numpy as np
import pytest

from modalities import load_modality
from modalities.image import ImageModality, read_idx, write_idx


@pytest.fixture
def idx_dir(tmp_path):
    """Tiny Fashion-MNIST-layout folder: gzipped train files, raw (un-gzipped) test files."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (12, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(12) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (4, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", [3, 3, 0, 9])
    return tmp_path


def test_idx_layout_labels_and_classes(idx_dir):
    images = ImageModality(normal_classes=[0, 1])
    train = images.load(idx_dir, split="train")
    raw = read_idx(idx_dir / "train-images-idx3-ubyte.gz", 2051)
    assert train.X.shape == (12, 28, 28) and train.X.dtype == np.float32
    np.testing.assert_allclose(train.X, raw / 255.0)
    np.testing.assert_array_equal(train.info["class"], np.arange(12) % 10)
    np.testing.assert_array_equal(train.y, ~np.isin(np.arange(12) % 10, [0, 1]))
    test = images.load(idx_dir, split="test")
    assert test.y.tolist() == [1, 1, 0, 1] and test.source[0] == "t10k-images-idx3-ubyte"
    unlabelled = ImageModality().load(idx_dir / "t10k-images-idx3-ubyte")
    assert unlabelled.y is None and unlabelled.info["class"].tolist() == [3, 3, 0, 9]


def test_prepare_resizes_to_32_or_keeps_native(idx_dir):
    images = ImageModality()
    w = images.load(idx_dir)
    x = images.prepare(w.X)
    assert x.shape == (12, 1, 32, 32) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_allclose(images.prepare((w.X[0] * 255).round().astype(np.uint8)), x[:1], atol=1e-6)
    native = ImageModality(size=None).prepare(w.X)
    np.testing.assert_array_equal(native[:, 0], w.X)
    flat = np.full((28, 28), 0.25, dtype=np.float32)
    np.testing.assert_allclose(images.prepare(flat), 0.25, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        images.prepare(w.X * 3)
    restored = load_modality(json.loads(json.dumps(images.to_dict())))
    assert restored.raw_shape == (28, 28)
    with pytest.raises(ValueError, match="does not match"):
        restored.prepare(np.zeros((1, 30, 30)))


def test_npz_images(tmp_path):
    np.savez(tmp_path / "imgs.npz", X=np.zeros((3, 8, 8), np.uint8), y=[5, 6, 5])
    w = ImageModality(normal_classes=[5]).load(tmp_path / "imgs.npz")
    assert w.X.shape == (3, 8, 8) and w.y.tolist() == [0, 1, 0]


def test_idx_errors(tmp_path, idx_dir):
    labels = tmp_path / "labels-as-images"
    write_idx(labels, np.zeros(5))
    with pytest.raises(ValueError, match=r"labels-as-images: wrong IDX magic 2049, expected 2051"):
        read_idx(labels, 2051)
    truncated = tmp_path / "short-images-idx3-ubyte"
    full = tmp_path / "full-images-idx3-ubyte"
    write_idx(full, np.zeros((2, 4, 4)))
    truncated.write_bytes(full.read_bytes()[:-5])
    with pytest.raises(ValueError, match="short-images-idx3-ubyte: header says"):
        ImageModality().load(truncated)
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        ImageModality().load(tmp_path / "..", split="train")
    with pytest.raises(ValueError, match="split must be"):
        ImageModality().load(idx_dir, split="val")
    with pytest.raises(FileNotFoundError):
        ImageModality().load(tmp_path / "nothing.gz")
