"""Shared containers and the Modality interface.

Every modality turns its raw data into a `Windows` object (raw windows as they would
arrive over a stream, plus labels and bookkeeping) and turns raw windows into model
inputs with `prepare`. Pipelines rely only on this interface, so they can treat ECG,
audio, images and generic arrays the same way.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass
class Windows:
    """A batch of raw windows with labels and provenance.

    X: float32 raw windows (ECG [N, C, L], audio [N, samples], image [N, H, W]).
    y: int8 0 = normal, 1 = anomalous, or None when labels are unknown.
    source: record / file name each window comes from.
    group: split key (record for ECG, speaker or file for audio, file for others), so
        that one recording never ends up in both train and test.
    position: start sample (ECG, audio, arrays: row index) or image index in its source.
    info: optional per-window extra columns (e.g. "class" for images, "symbol" for ECG
        beats), each an array of length N.
    """

    X: np.ndarray
    y: np.ndarray | None
    source: np.ndarray
    group: np.ndarray
    position: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float32)
        n = len(self.X)
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.int8)
            if not np.isin(self.y, (0, 1)).all():
                raise ValueError("Windows.y must hold only 0 (normal) and 1 (anomalous)")
        self.source = np.asarray(self.source, dtype=str)
        self.group = np.asarray(self.group, dtype=str)
        self.position = np.asarray(self.position, dtype=np.int64)
        self.info = {k: np.asarray(v) for k, v in self.info.items()}
        columns = {"y": self.y, "source": self.source, "group": self.group, "position": self.position}
        columns.update({f"info[{k!r}]": v for k, v in self.info.items()})
        for name, col in columns.items():
            if col is not None and len(col) != n:
                raise ValueError(f"Windows.{name} has length {len(col)}, expected {n} (len(X))")

    def __len__(self) -> int:
        return len(self.X)

    def subset(self, mask_or_idx: np.ndarray | Sequence[int] | Sequence[bool]) -> Windows:
        """Windows selected by a boolean mask or an index array (copies the data)."""
        idx = np.asarray(mask_or_idx)
        if idx.dtype == bool and len(idx) != len(self):
            raise ValueError(f"boolean mask has length {len(idx)}, expected {len(self)}")
        if idx.dtype != bool:
            idx = idx.astype(np.int64)
        return Windows(
            X=self.X[idx],
            y=None if self.y is None else self.y[idx],
            source=self.source[idx],
            group=self.group[idx],
            position=self.position[idx],
            info={k: v[idx] for k, v in self.info.items()},
        )

    @staticmethod
    def concat(parts: Sequence[Windows]) -> Windows:
        """Concatenate windows; all parts must agree on window shape and on having labels.

        Only info columns present in every part are kept.
        """
        if not parts:
            raise ValueError("Windows.concat needs at least one Windows object")
        shapes = {p.X.shape[1:] for p in parts}
        if len(shapes) > 1:
            raise ValueError(f"cannot concatenate windows of different shapes: {sorted(shapes)}")
        labelled = {p.y is not None for p in parts}
        if len(labelled) > 1:
            raise ValueError("cannot concatenate labelled and unlabelled windows")
        keys = set(parts[0].info).intersection(*(p.info for p in parts[1:]))
        return Windows(
            X=np.concatenate([p.X for p in parts]),
            y=np.concatenate([p.y for p in parts]) if labelled == {True} else None,
            source=np.concatenate([p.source for p in parts]),
            group=np.concatenate([p.group for p in parts]),
            position=np.concatenate([p.position for p in parts]),
            info={k: np.concatenate([p.info[k] for p in parts]) for k in sorted(keys)},
        )


def split_by_group(
    windows: Windows,
    test_groups: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    random_state: int | None = 0,
) -> tuple[Windows, Windows]:
    """Split into (train, test) so that no group (record, speaker, file) is in both.

    Either name the test groups, or draw round(test_fraction * n_groups) of them at
    random (at least one group on each side).
    """
    groups = np.unique(windows.group)
    if test_groups is None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
        if len(groups) < 2:
            raise ValueError(f"need at least 2 groups to split, found {list(groups)}")
        n_test = min(max(1, round(test_fraction * len(groups))), len(groups) - 1)
        rng = np.random.default_rng(random_state)
        test_groups = rng.choice(groups, size=n_test, replace=False)
    else:
        unknown = sorted(set(map(str, test_groups)) - set(groups))
        if unknown:
            raise ValueError(f"test_groups not found in the windows: {unknown}")
    is_test = np.isin(windows.group, np.asarray(test_groups, dtype=str))
    return windows.subset(~is_test), windows.subset(is_test)


def aggregate_scores(
    scores: np.ndarray, source: np.ndarray, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate window scores per source (e.g. audio patches -> clip score).

    Returns (sources in order of first appearance, aggregated scores). "max" flags a clip
    when any patch is anomalous; "mean" is steadier for stationary sounds. Also works for
    labels (how="max" gives a clip label).
    """
    scores = np.asarray(scores, dtype=np.float64)
    source = np.asarray(source, dtype=str)
    if scores.shape != source.shape:
        raise ValueError(f"scores {scores.shape} and source {source.shape} must have the same shape")
    if how not in ("mean", "max"):
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
    names, first, inverse = np.unique(source, return_index=True, return_inverse=True)
    if how == "mean":
        agg = np.bincount(inverse, weights=scores, minlength=len(names)) / np.bincount(inverse)
    else:
        agg = np.full(len(names), -np.inf)
        np.maximum.at(agg, inverse, scores)
    order = np.argsort(first)
    return names[order], agg[order]


class Modality:
    """Base class: settings in, `Windows` out, plus the single raw -> model-input path.

    Constructors only store settings (sklearn style). Attributes ending in "_" are
    learned while loading (e.g. the number of ECG leads) and are saved by `to_dict`
    too, so a scorer restored with `from_dict` validates and prepares incoming windows
    exactly like training did.
    """

    name: ClassVar[str] = ""
    #: generator the AGAD core should use for this kind of input unless told otherwise
    default_generator: ClassVar[str] = "naive"
    #: AGAD parameters `agad-stream train` uses for this kind of input unless told otherwise,
    #: each chosen on this modality's validation data (saved with the model in agad.json)
    agad_defaults: ClassVar[dict[str, Any]] = {}

    def get_params(self) -> dict[str, Any]:
        """Constructor settings, read back from the attributes of the same name."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def learned_state(self) -> dict[str, Any]:
        """Settings learned by `load` (public attributes ending in "_")."""
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description, enough to rebuild this modality for scoring."""
        return {"name": self.name, "params": _jsonable(self.get_params()), "state": _jsonable(self.learned_state())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Modality:
        if d.get("name") != cls.name:
            raise ValueError(f"dict describes modality {d.get('name')!r}, not {cls.name!r}")
        obj = cls(**d.get("params", {}))
        for k, v in d.get("state", {}).items():
            setattr(obj, k, tuple(v) if isinstance(v, list) else v)
        return obj

    def load(self, path: str | Path, **opts: Any) -> Windows:
        raise NotImplementedError

    def prepare(self, raw: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def quality_issues(self, raw: np.ndarray) -> list[str | None]:
        """Per raw window, the first signal-quality check it fails (e.g. "flatline"), or None.

        The model scores whatever it is given (ECG `prepare` turns a flat line of any level
        into the most normal window there is), so a window whose signal cannot be trusted
        must be caught on the raw samples. Modalities without checks pass every window.
        """
        return [None] * len(self.check_raw(raw))

    def fit_quality(self, raw: np.ndarray) -> None:
        """Learn what the quality checks need from normal training windows (nothing by default)."""

    def _enabled_checks(self, available: tuple[str, ...]) -> list[str]:
        """The checks named in the `quality_checks` setting, in `available` order; unknown names are an error."""
        unknown = sorted(set(self.quality_checks) - set(available))
        if unknown:
            raise ValueError(f"{self.name}: unknown quality_checks {unknown}; choose from {list(available)}")
        return [name for name in available if name in self.quality_checks]

    @property
    def raw_shape(self) -> tuple[int | None, ...]:
        """Shape of one raw window; None marks a size not fixed until data is loaded."""
        raise NotImplementedError

    def check_raw(self, raw: np.ndarray) -> np.ndarray:
        """Validate raw windows against `raw_shape`; a single window gets a batch axis."""
        raw = np.asarray(raw)
        expected = self.raw_shape
        if raw.ndim == len(expected):
            raw = raw[None]
        if raw.ndim != len(expected) + 1:
            raise ValueError(
                f"{self.name}: raw windows must have shape [N, {', '.join(map(str, expected))}] "
                f"(or one window), got {raw.shape}"
            )
        for got, want in zip(raw.shape[1:], expected, strict=True):
            if want is not None and got != want:
                raise ValueError(f"{self.name}: raw window shape {raw.shape[1:]} does not match expected {expected}")
        if not np.issubdtype(raw.dtype, np.number):
            raise ValueError(f"{self.name}: raw windows must be numeric, got dtype {raw.dtype}")
        return raw

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def has_run(mask: np.ndarray, length: int) -> np.ndarray:
    """Whether each row of `mask` [..., L] holds at least `length` consecutive True values."""
    length = max(1, int(length))
    if length > mask.shape[-1]:
        return np.zeros(mask.shape[:-1], dtype=bool)
    counts = np.cumsum(mask, axis=-1, dtype=np.int64)
    counts = np.concatenate([np.zeros((*mask.shape[:-1], 1), np.int64), counts], axis=-1)
    return ((counts[..., length:] - counts[..., :-length]) == length).any(axis=-1)


def sliding_range(x: np.ndarray, span: int) -> np.ndarray:
    """Max minus min of every `span` consecutive values of the last axis: [..., L] -> [..., L - span + 1].

    Numpy only (van Herk / Gil-Werman: running maxima within blocks of `span`, forwards and
    backwards, so each window is the max of two lookups), so that a scorer's signal-quality
    checks need no scipy; the values equal scipy.ndimage's max minus min filters."""
    return _sliding_max(x, span) + _sliding_max(-x, span)


def _sliding_max(x: np.ndarray, span: int) -> np.ndarray:
    length = x.shape[-1]
    blocks = -(-length // span)
    padded = np.concatenate([x, np.full((*x.shape[:-1], blocks * span - length), -np.inf)], axis=-1)
    padded = padded.reshape(*x.shape[:-1], blocks, span)
    forward = np.maximum.accumulate(padded, axis=-1).reshape(*x.shape[:-1], -1)
    backward = np.maximum.accumulate(padded[..., ::-1], axis=-1)[..., ::-1].reshape(*x.shape[:-1], -1)
    return np.maximum(backward[..., :length - span + 1], forward[..., span - 1:length])


def first_failures(failed: dict[str, np.ndarray], n: int) -> list[str | None]:
    """Per window, the name of the first check (in dict order) whose mask [n] is True, or None."""
    issues: list[str | None] = [None] * n
    for name, mask in reversed(failed.items()):
        for i in np.flatnonzero(mask):
            issues[i] = name
    return issues


def progress(items: Sequence[T], verbose: bool, desc: str) -> Iterable[T]:
    """Progress bar over many files when `verbose`, silent otherwise."""
    from tqdm.auto import tqdm  # only loading shows progress; a scorer never does

    return tqdm(items, desc=desc, disable=not verbose or len(items) < 2)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
