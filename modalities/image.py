"""Grey-scale images from IDX files (MNIST / Fashion-MNIST layout) or .npz arrays.

Read with numpy and gzip only (no torchvision), so the image path needs nothing the
audio and ECG paths do not already install.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .arrays import load_numpy_file
from .base import Modality, Windows

IDX_IMAGES_MAGIC = 2051  # uint8, 3 dimensions (N, H, W)
IDX_LABELS_MAGIC = 2049  # uint8, 1 dimension (N)
#: file name stems of the MNIST / Fashion-MNIST layout per split
SPLIT_STEMS = {"train": "train", "test": "t10k"}


class ImageModality(Modality):
    """Images as [N, H, W] float in [0, 1]; model inputs [N, 1, size, size].

    size=32 follows the AGAD paper (28x28 Fashion-MNIST resized to 32x32, which suits
    a stride-2 encoder); size=None keeps the native size. Labels: classes in
    `normal_classes` -> 0, others -> 1 (one-vs-rest); without it y is unknown. The
    original class ids are always kept in `Windows.info["class"]` so a benchmark can
    loop over every class as the normal one.
    """

    name = "image"

    def __init__(
        self,
        size: int | None = 32,
        normal_classes: Sequence[int] | None = None,
        batch_size: int = 4096,
    ) -> None:
        self.size = size
        self.normal_classes = normal_classes
        self.batch_size = batch_size

    @property
    def raw_shape(self) -> tuple[int | None, ...]:
        return tuple(getattr(self, "image_shape_", (None, None)))

    def load(self, path: str | Path, split: str = "train") -> Windows:
        """Windows from a Fashion-MNIST-layout directory (split "train" or "test"),
        an IDX image file (labels read from the matching labels file if present) or an .npz
        with X [N, H, W] and optional y."""
        path = Path(path)
        if path.is_dir():
            images_path = _find_split_file(path, split, "images-idx3-ubyte")
            labels_path: Path | None = _find_split_file(path, split, "labels-idx1-ubyte")
        elif not path.exists():
            raise FileNotFoundError(f"image file not found: {path}")
        elif path.suffix == ".npz":
            return self._windows(*_read_npz(path), path)
        else:
            images_path, labels_path = path, _matching_labels_file(path)
        images = read_idx(images_path, IDX_IMAGES_MAGIC)
        labels = read_idx(labels_path, IDX_LABELS_MAGIC) if labels_path is not None else None
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images")
        return self._windows(images, labels, images_path)

    def _windows(self, images: np.ndarray, labels: np.ndarray | None, path: Path) -> Windows:
        if images.ndim != 3 or len(images) == 0:
            raise ValueError(f"{path}: expected images [N, H, W] with N > 0, got {images.shape}")
        X = _to_unit_range(images, path)
        self.image_shape_ = (int(X.shape[1]), int(X.shape[2]))
        y = None
        if labels is not None and self.normal_classes is not None:
            y = (~np.isin(labels, np.asarray(self.normal_classes))).astype(np.int8)
        elif self.normal_classes is not None:
            raise ValueError(f"{path} has no labels, but normal_classes={self.normal_classes!r} was given")
        n = len(X)
        info = {} if labels is None else {"class": labels.astype(np.int64)}
        return Windows(X=X, y=y, source=[path.name] * n, group=[path.name] * n, position=np.arange(n), info=info)

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        """[N, H, W] (or one [H, W]) in [0, 1], or uint8 0-255 -> float32 [N, 1, size, size].

        Bilinear resize (no antialiasing: the usual 28 -> 32 is an upscale), in numpy, so
        scoring images needs no torch."""
        raw = self.check_raw(raw)
        x = _to_unit_range(raw, "raw images")
        if self.size is not None and x.shape[-2:] != (self.size, self.size):
            rows = bilinear_weights(x.shape[-2], self.size)
            columns = bilinear_weights(x.shape[-1], self.size)
            x = np.concatenate([np.matmul(np.matmul(rows, chunk), columns.T)
                                for chunk in np.array_split(x, max(1, -(-len(x) // self.batch_size)))])
        return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)[:, None]


def bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] matrix of 1D bilinear interpolation with half-pixel centres, clamped at
    the edges: torch's F.interpolate(mode="bilinear", align_corners=False), one axis at a time."""
    source = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), n_in - 1)
    upper = np.minimum(lower + 1, n_in - 1)
    frac = (source - lower).astype(np.float32)
    weights = np.zeros((n_out, n_in), np.float32)
    np.add.at(weights, (np.arange(n_out), lower), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), upper), frac)
    return weights


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """uint8 array from an IDX file (gzip-compressed or raw), checking magic and size.

    2051 = images [N, H, W] with a 16-byte header, 2049 = labels [N] with an 8-byte header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    ndim = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}[expected_magic]
    header = 4 + 4 * ndim
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        kind = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
        raise ValueError(f"{path}: wrong IDX magic {magic}, expected {expected_magic} ({kind}, uint8)")
    if len(data) < header:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an IDX header")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(f"{path}: header says {dims} = {expected} bytes of data, found {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write uint8 images [N, H, W] or labels [N] as IDX (gzip if the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {3: IDX_IMAGES_MAGIC, 1: IDX_LABELS_MAGIC}.get(array.ndim)
    if magic is None:
        raise ValueError(f"IDX arrays must be [N, H, W] or [N], got {array.shape}")
    data = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape) + array.tobytes()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)


def _find_split_file(directory: Path, split: str, kind: str) -> Path:
    if split not in SPLIT_STEMS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    for name in (f"{SPLIT_STEMS[split]}-{kind}.gz", f"{SPLIT_STEMS[split]}-{kind}"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {SPLIT_STEMS[split]}-{kind}[.gz] in directory {directory}")


def _matching_labels_file(images_path: Path) -> Path | None:
    candidate = images_path.with_name(images_path.name.replace("images-idx3", "labels-idx1"))
    return candidate if candidate != images_path and candidate.is_file() else None


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    data = load_numpy_file(path)
    if "X" not in data:
        raise ValueError(f"{path} has no array 'X' (found {sorted(data.files)})")
    X, y = data["X"], (np.asarray(data["y"]).reshape(-1) if "y" in data else None)
    if y is not None and len(y) != len(X):
        raise ValueError(f"{path}: y has {len(y)} entries but X has {len(X)} images")
    return X, y


def _to_unit_range(images: np.ndarray, where: str | Path) -> np.ndarray:
    """uint8 -> /255; floats must already lie in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    x = images.astype(np.float32)
    if x.size and (not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0):
        raise ValueError(f"{where}: float images must lie in [0, 1] (or pass uint8 0-255)")
    return x
