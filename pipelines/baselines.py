"""Reference detectors fitted on the same training windows as AGAD and scored on the same test windows.

A result for AGAD means little without them: IsolationForest and PCA reconstruction
error (scikit-learn) tell whether a deep model is needed at all, and the plain
autoencoder (AGAD's generator with only L_con) tells what the adversarial and
pseudo-anomaly terms add. Every baseline gets its threshold the way AGAD does: from
held-out normal training windows at the same target false-positive rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from agad_stream import AGAD

BASELINE_NAMES = ("plain-autoencoder", "isolation-forest", "pca")
#: share of the training variance the PCA subspace keeps; the rest is the anomaly score
PCA_VARIANCE = 0.95


class Detector(Protocol):
    threshold_: float

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Any: ...

    def score_samples(self, X: np.ndarray) -> np.ndarray: ...


def plain_autoencoder(model: AGAD) -> AGAD:
    """An unfitted copy of `model` keeping only L_con: no adversarial, pseudo-anomaly or latent terms.

    Same generator, widths, epochs, batch size, seed and hold-out, so the difference in
    results is what AGAD's extra terms bring. Labelled anomalies would only enter
    through those terms, so the plain autoencoder is always trained on normals only.
    """
    params = model.get_params()
    params.update(lambda_adv=0.0, lambda_adcon=0.0, lambda_lat=0.0, aux_bn=False)
    return AGAD(**params)


class FlatDetector:
    """Base for scikit-learn detectors on flattened windows.

    Windows are scaled per channel as AGAD scales them, the detector is fitted on the
    normal windows minus a held-out share, and the threshold is the (1 - target_fpr)
    quantile of the held-out scores, as in AGAD.fit.
    """

    def __init__(self, target_fpr: float = 0.01, validation_fraction: float = 0.1, random_state: int | None = None):
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "FlatDetector":
        normal = X if y is None else X[np.asarray(y) == 0]
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(normal))
        n_validation = int(round(self.validation_fraction * len(normal)))
        validation, train = normal[order[:n_validation]], normal[order[n_validation:]]
        axes = (0, *range(2, X.ndim))
        self.mean_ = train.mean(axis=axes, keepdims=True)[0]
        self.std_ = np.maximum(train.std(axis=axes, keepdims=True)[0], 1e-8)
        self._fit_flat(self._flatten(train))
        calibration = validation if len(validation) else train
        self.threshold_ = float(np.quantile(self.score_samples(calibration), 1 - self.target_fpr, method="higher"))
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return self._score_flat(self._flatten(X))

    def _flatten(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.std_).reshape(len(X), -1)

    def _fit_flat(self, F: np.ndarray) -> None:
        raise NotImplementedError

    def _score_flat(self, F: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class IsolationForestDetector(FlatDetector):
    """IsolationForest on the scaled samples; score = minus sklearn's score (higher = more anomalous)."""

    def _fit_flat(self, F: np.ndarray) -> None:
        self.forest_ = IsolationForest(n_estimators=200, random_state=self.random_state, n_jobs=1).fit(F)

    def _score_flat(self, F: np.ndarray) -> np.ndarray:
        return -self.forest_.score_samples(F)


class PCADetector(FlatDetector):
    """Reconstruction error outside the principal subspace that keeps PCA_VARIANCE of the training variance."""

    def _fit_flat(self, F: np.ndarray) -> None:
        self.pca_ = PCA(n_components=PCA_VARIANCE, svd_solver="full", random_state=self.random_state).fit(F)

    def _score_flat(self, F: np.ndarray) -> np.ndarray:
        reconstructed = self.pca_.inverse_transform(self.pca_.transform(F))
        return np.linalg.norm(F - reconstructed, axis=1)


@dataclass
class FittedBaseline:
    name: str
    detector: Detector
    fit_seconds: float


def build_baseline(name: str, model: AGAD) -> Detector:
    """An unfitted baseline sharing `model`'s seed, hold-out share and target false-positive rate."""
    shared = dict(target_fpr=model.target_fpr, validation_fraction=model.validation_fraction,
                  random_state=model.random_state)
    if name == "plain-autoencoder":
        return plain_autoencoder(model)
    if name == "isolation-forest":
        return IsolationForestDetector(**shared)
    if name == "pca":
        return PCADetector(**shared)
    raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINE_NAMES)}")


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
