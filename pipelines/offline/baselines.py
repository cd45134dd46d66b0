"""Reference detectors fitted on the same training windows as AGAD and scored on the same test windows.

A result for AGAD means little without them. PyOD's detectors (PCA, IsolationForest,
ECOD, DeepSVDD and its MLP autoencoder) are the library people trust, so they are used
as they ship, with their default settings. Two ablations made from AGAD itself tell what
its parts add: the plain autoencoder (AGAD's generator with only L_con) and AGAD
without the pseudo-anomaly term L_adcon. Every detector gets its threshold the way AGAD
does: from held-out normal training windows at the same target false-positive rate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from agad_stream import AGAD

#: what `evaluate` and the benchmarks fit beside AGAD; each takes seconds on a few thousand windows
BASELINE_NAMES = ("plain-autoencoder", "pca", "isolation-forest", "ecod")
#: slower ones (tens of seconds to minutes): the deep PyOD detectors and the L_adcon ablation
EXTRA_BASELINE_NAMES = ("agad-no-adcon", "deep-svdd", "pyod-autoencoder")
ALL_BASELINE_NAMES = BASELINE_NAMES + EXTRA_BASELINE_NAMES


def parse_agad_settings(items: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` strings (from ``--agad``) as AGAD constructor keywords; VALUE is JSON when it parses."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--agad {item!r}: expected NAME=VALUE, e.g. adcon_margin=0.1")
        try:
            params[name] = json.loads(value)
        except json.JSONDecodeError:
            params[name] = value
    return params


class Detector(Protocol):
    threshold_: float

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Any: ...

    def score_samples(self, X: np.ndarray) -> np.ndarray: ...


def plain_autoencoder(model: AGAD) -> AGAD:
    """An unfitted copy of `model` keeping only L_con: no adversarial, pseudo-anomaly or latent terms.

    Same generator, widths, epochs, batch size, seed and hold-out, so the difference in
    results is what AGAD's extra terms bring. Given labelled anomalies, it trains on them
    through AGAD's labelled-anomaly loss (the margin loss by default), the one term it keeps
    beside L_con, so a label-using comparison gives it the same labels.
    """
    params = model.get_params()
    params.update(lambda_adv=0.0, lambda_adcon=0.0, lambda_lat=0.0, aux_bn=False)
    return type(model)(**params)


class PyODDetector:
    """A PyOD detector on flattened windows, with AGAD's scaling, hold-out and threshold.

    Windows are scaled per channel as AGAD scales them, the detector is fitted on the
    normal windows minus a held-out share, and the threshold is the (1 - target_fpr)
    quantile of the held-out scores, as in AGAD.fit. PyOD's decision_function is the score.
    """

    def __init__(self, factory: Callable[[int, int | None], Any], target_fpr: float = 0.01,
                 validation_fraction: float = 0.1, random_state: int | None = None):
        self.factory = factory
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "PyODDetector":
        normal = X if y is None else X[np.asarray(y) == 0]
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(normal))
        n_validation = int(round(self.validation_fraction * len(normal)))
        validation, train = normal[order[:n_validation]], normal[order[n_validation:]]
        axes = (0, *range(2, X.ndim))
        self.mean_ = train.mean(axis=axes, keepdims=True)[0]
        self.std_ = np.maximum(train.std(axis=axes, keepdims=True)[0], 1e-8)
        F = self._flatten(train)
        self.detector_ = self.factory(F.shape[1], self.random_state).fit(F)
        calibration = validation if len(validation) else train
        self.threshold_ = float(np.quantile(self.score_samples(calibration), 1 - self.target_fpr, method="higher"))
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.detector_.decision_function(self._flatten(X)), dtype=np.float64)

    def _flatten(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.std_).reshape(len(X), -1)


def _pyod_factories() -> dict[str, Callable[[int, int | None], Any]]:
    """PyOD detectors with their shipped defaults (imported lazily: PyOD pulls in numba)."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.deep_svdd import DeepSVDD
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from pyod.models.pca import PCA

    return {
        "pca": lambda n_features, seed: PCA(random_state=seed),
        "isolation-forest": lambda n_features, seed: IForest(random_state=seed),
        "ecod": lambda n_features, seed: ECOD(),
        "deep-svdd": lambda n_features, seed: DeepSVDD(n_features=n_features, random_state=seed, verbose=0),
        "pyod-autoencoder": lambda n_features, seed: AutoEncoder(random_state=0 if seed is None else seed, verbose=0),
    }


def agad_without_adcon(model: AGAD) -> AGAD:
    """An unfitted copy of `model` without the pseudo-anomaly term (λ_adcon = 0, no auxiliary BN)."""
    params = model.get_params()
    params.update(lambda_adcon=0.0, aux_bn=False)
    return type(model)(**params)


@dataclass
class FittedBaseline:
    name: str
    detector: Detector
    fit_seconds: float


def build_baseline(name: str, model: AGAD) -> Detector:
    """An unfitted baseline sharing `model`'s seed, hold-out share and target false-positive rate."""
    if name == "plain-autoencoder":
        return plain_autoencoder(model)
    if name == "agad-no-adcon":
        return agad_without_adcon(model)
    if name not in ALL_BASELINE_NAMES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(ALL_BASELINE_NAMES)}")
    return PyODDetector(_pyod_factories()[name], target_fpr=model.target_fpr,
                        validation_fraction=model.validation_fraction, random_state=model.random_state)


def fit_baselines(
    names: tuple[str, ...] | list[str], model: AGAD, X_train: np.ndarray, y_train: np.ndarray | None = None
) -> list[FittedBaseline]:
    """Fit each named baseline on the normal training windows (labelled anomalies are left out)."""
    normal = X_train if y_train is None else X_train[np.asarray(y_train) == 0]
    fitted = []
    for name in names:
        detector = build_baseline(name, model)
        start = time.perf_counter()
        detector.fit(normal)
        fitted.append(FittedBaseline(name, detector, time.perf_counter() - start))
    return fitted
