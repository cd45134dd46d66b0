"""The one-known-type protocol and the detectors that use the same labels as AGAD.

Deep SAD's protocol (Ruff et al., ICLR 2020): training holds normal windows plus a few
labelled anomalies of ONE known type; the test set holds every type, so the types nobody
labelled show how far the labels generalise. Every detector here has AGAD's contract:
``fit(X, y)`` with y = 1 for labelled anomalies, ``score_samples`` (higher = more
anomalous) and ``threshold_`` calibrated, as AGAD does, at ``target_fpr`` on normal
training windows held out of the fit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from agad_stream import AGAD
from agad_stream.estimator import DEFAULT_ANOMALIES_PER_BATCH, auto_batch_size, auto_channels
from agad_stream.losses import bce_fake, bce_real
from agad_stream.networks import Discriminator
from agad_stream.training import init_weights
from pipelines.offline.baselines import agad_without_adcon, build_baseline, plain_autoencoder

#: AAMI beat classes (ANSI/AAMI EC57) of the MIT-BIH annotation symbols; paced and unclassifiable beats are Q
AAMI_CLASS = {**dict.fromkeys("NLRej", "N"), **dict.fromkeys("AaJS", "S"), **dict.fromkeys("VE", "V"),
              "F": "F", **dict.fromkeys("/fQ", "Q")}


def aami_classes(symbols: np.ndarray) -> np.ndarray:
    """AAMI class (N, S, V, F, Q) of each beat symbol."""
    unknown = sorted(set(symbols) - set(AAMI_CLASS))
    if unknown:
        raise ValueError(f"beat symbols without an AAMI class: {unknown}")
    return np.array([AAMI_CLASS[s] for s in symbols])


def stratified_sample(groups: np.ndarray, candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of the ``candidates`` indices, each group contributing in proportion to its share
    (largest remainders), so no record dominates a small training set by chance."""
    if n >= len(candidates):
        return np.sort(candidates)
    names, counts = np.unique(groups[candidates], return_counts=True)
    quota = n * counts / counts.sum()
    take = np.floor(quota).astype(int)
    take[np.argsort(quota - take)[::-1][: n - take.sum()]] += 1
    chosen = [rng.choice(candidates[groups[candidates] == g], size=k, replace=False) for g, k in zip(names, take)]
    return np.sort(np.concatenate(chosen))


def one_known_type_split(
    classes: np.ndarray, groups: np.ndarray, train_groups: Sequence[str], known: str, n_normal: int,
    n_labelled: int, seed: int, normal_class: str = "N",
) -> tuple[np.ndarray, np.ndarray]:
    """(normal training indices, labelled-anomaly indices) from the training groups only.

    Normals: ``n_normal`` of class ``normal_class``, stratified by group, drawn with ``seed``.
    Labelled anomalies: the first ``n_labelled`` of a seeded permutation of the ``known``
    class, so a larger count holds every smaller one (a label-efficiency curve then adds
    labels instead of redrawing them). No window of any other class is ever returned.
    """
    in_train = np.isin(groups, np.asarray(train_groups, dtype=str))
    normal = np.flatnonzero(in_train & (classes == normal_class))
    known_idx = np.flatnonzero(in_train & (classes == known))
    if n_labelled > len(known_idx):
        raise ValueError(f"{n_labelled} labelled {known} windows asked for, the training groups hold {len(known_idx)}")
    normals = stratified_sample(groups, normal, n_normal, np.random.default_rng([seed, 0]))
    labelled = np.random.default_rng([seed, 1]).permutation(known_idx)[:n_labelled]
    return normals, np.sort(labelled)


class HeldOutThreshold:
    """Shared fit: hold normals out as AGAD does, standardise per channel on the rest, fit on
    the rest plus every labelled anomaly, then set the threshold on the held-out normals."""

    def __init__(self, target_fpr: float = 0.01, validation_fraction: float = 0.1, random_state: int | None = None):
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> "HeldOutThreshold":
        y = np.zeros(len(X), np.int8) if y is None else np.asarray(y)
        normal = np.random.default_rng(self.random_state).permutation(np.flatnonzero(y == 0))
        n_validation = int(round(self.validation_fraction * len(normal)))
        validation, train = normal[:n_validation], normal[n_validation:]
        axes = (0, *range(2, X.ndim))
        self.mean_ = X[train].mean(axis=axes, keepdims=True)[0]
        self.std_ = np.maximum(X[train].std(axis=axes, keepdims=True)[0], 1e-8)
        fit_idx = np.concatenate([train, np.flatnonzero(y == 1)])
        self._fit_scaled(self._scale(X[fit_idx]), y[fit_idx].astype(np.int64))
        calibration = X[validation] if len(validation) else X[train]
        self._calibrate_scale(calibration)
        self.threshold_ = float(np.quantile(self.score_samples(calibration), 1 - self.target_fpr, method="higher"))
        return self

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) / self.std_).astype(np.float32)

    def _calibrate_scale(self, calibration: np.ndarray) -> None:
        """Hook for scores that need the held-out normals before the threshold is set."""

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class GradientBoosting(HeldOutThreshold):
    """scikit-learn's HistGradientBoostingClassifier on the flattened windows (normal vs labelled),
    with balanced class weights: a few labels among thousands of normals otherwise barely move it."""

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.classifier_ = HistGradientBoostingClassifier(class_weight="balanced", random_state=self.random_state)
        self.classifier_.fit(X.reshape(len(X), -1), y)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return self.classifier_.predict_proba(self._scale(X).reshape(len(X), -1))[:, 1]


class DiscriminatorClassifier(HeldOutThreshold):
    """AGAD's discriminator trained alone as a classifier: normal windows real, labelled anomalies fake.

    Same network, widths, initialisation, optimiser (Adam 2e-4, beta1 0.5) and batch make-up
    (AGAD's batch of normals plus min(32, labelled) oversampled anomalies) as inside AGAD, for
    ``max_steps`` steps; the score is minus D's "real" logit. Without the generator, this is
    what D alone learns from the labels.
    """

    def __init__(self, max_steps: int, channels: Sequence[int] | str = "auto", lr: float = 2e-4, **kwargs):
        super().__init__(**kwargs)
        self.max_steps = max_steps
        self.channels = channels
        self.lr = lr

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray) -> None:
        normal, anomalous = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
        if not len(anomalous):
            raise ValueError("the discriminator alone needs labelled anomalies to classify")
        if self.random_state is not None:
            torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        channels = auto_channels(len(normal)) if self.channels == "auto" else tuple(self.channels)
        self.network_ = Discriminator(X.ndim - 2, X.shape[1], X.shape[2:], channels)
        init_weights(self.network_)
        optimiser = torch.optim.Adam(self.network_.parameters(), lr=self.lr, betas=(0.5, 0.999))
        batch, k = auto_batch_size(len(normal)), min(DEFAULT_ANOMALIES_PER_BATCH, len(anomalous))
        self.network_.train()
        for _ in range(self.max_steps):
            x_n = torch.from_numpy(X[rng.choice(normal, size=min(batch, len(normal)), replace=False)])
            x_a = torch.from_numpy(X[rng.choice(anomalous, size=k, replace=False)])
            logits, _ = self.network_(torch.cat([x_n, x_a]))
            loss = bce_real(logits[: len(x_n)]) + bce_fake(logits[len(x_n):])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        self.network_.eval()

    def score_samples(self, X: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        scaled = self._scale(X)
        with torch.inference_mode():
            logits = [self.network_(torch.from_numpy(scaled[i:i + batch_size]))[0] for i in range(0, len(scaled), batch_size)]
        return -torch.cat(logits).numpy().astype(np.float64)


class AGADScore(HeldOutThreshold):
    """AGAD fitted as usual (defaults), scored with what its discriminator learned from the labels.

    "discriminator": minus D's "real" logit (D is trained to call labelled anomalies and the
    pseudo-anomalies fake). "combined": the sum of A(x) = ||x - G(x)||_2 and of that D score,
    each as a robust z-score (median, 1.4826 MAD) of the held-out normals, so neither scale
    dominates. The question it answers: does AGAD's own D carry the labels' gain that the
    reconstruction score does not show, while A(x) keeps the unlabelled types?
    """

    def __init__(self, agad: AGAD, score: str, **kwargs):
        super().__init__(**kwargs)
        if score not in ("discriminator", "combined"):
            raise ValueError(f"score must be 'discriminator' or 'combined', not {score!r}")
        self.agad = agad
        self.score = score

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray) -> None:
        self.agad_ = self.agad.fit(X, y if y.any() else None)
        self.n_steps_, self.best_step_ = getattr(self.agad_, "n_steps_", None), getattr(self.agad_, "best_step_", None)

    def _discriminator_score(self, scaled: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        model = self.agad_
        model.discriminator_.eval()
        normalised = model._normalise(scaled)
        with torch.inference_mode():
            logits = [model.discriminator_(model._to_device(normalised[i:i + batch_size]))[0].cpu()
                      for i in range(0, len(normalised), batch_size)]
        return -torch.cat(logits).numpy().astype(np.float64)

    def _parts(self, scaled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.agad_.score_samples(scaled).astype(np.float64), self._discriminator_score(scaled)

    def _calibrate_scale(self, calibration: np.ndarray) -> None:
        centre, spread = [], []
        for part in self._parts(self._scale(calibration)):
            median = float(np.median(part))
            centre.append(median)
            spread.append(max(1.4826 * float(np.median(np.abs(part - median))), 1e-12))
        self.centre_, self.spread_ = centre, spread

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        scaled = self._scale(X)
        if self.score == "discriminator":
            return self._discriminator_score(scaled)
        reconstruction, discriminator = self._parts(scaled)
        return ((reconstruction - self.centre_[0]) / self.spread_[0]
                + (discriminator - self.centre_[1]) / self.spread_[1])


class DeepSAD(HeldOutThreshold):
    """Deep SAD (Ruff et al. 2020) from the ``deepod`` package (0.4.1), on the flattened windows.

    deepod's MLP with its shipped widths, learning rate and batch; only the number of epochs
    is set, to fit the CPU budget. With no labels Deep SAD's objective is Deep SVDD's, and
    deepod's DeepSAD cannot run without a labelled anomaly, so deepod's DeepSVDD is used then.
    """

    def __init__(self, epochs: int, **kwargs):
        super().__init__(**kwargs)
        self.epochs = epochs

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray) -> None:
        from deepod.models.tabular import DeepSAD as DeepODSAD
        from deepod.models.tabular import DeepSVDD as DeepODSVDD

        seed = 42 if self.random_state is None else self.random_state
        options = dict(epochs=self.epochs, device="cpu", verbose=0, random_state=seed)
        flat = X.reshape(len(X), -1)
        if y.any():
            self.model_ = DeepODSAD(**options).fit(flat, y)
        else:
            self.model_ = DeepODSVDD(**options).fit(flat)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.decision_function(self._scale(X).reshape(len(X), -1)), dtype=np.float64)


#: detectors that need labelled anomalies (they have nothing to learn at 0 labels)
NEEDS_LABELS = ("gradient-boosting", "discriminator-alone")
#: unsupervised references, fitted at 0 labels only
UNSUPERVISED_ONLY = ("isolation-forest", "pca")
LABEL_DETECTORS = ("agad", "agad-no-adcon", "plain-autoencoder", "deep-sad", *NEEDS_LABELS,
                   "agad-d-score", "agad-combined-score")
DETECTOR_NAMES = (*LABEL_DETECTORS, *UNSUPERVISED_ONLY)


def build_detector(name: str, seed: int, max_steps: int, deep_sad_epochs: int, **agad_options):
    """An unfitted detector by name; every AGAD variant gets the same step budget and seed.

    "plain-autoencoder" is AGAD's generator with L_con only; given labels it is trained
    with AGAD's labelled-anomaly loss too (the margin loss by default), the same labels
    the other detectors get.
    """
    agad = AGAD(random_state=seed, device="cpu", verbose=False, max_steps=max_steps, **agad_options)
    common = dict(target_fpr=agad.target_fpr, validation_fraction=agad.validation_fraction, random_state=seed)
    builders = {
        "agad": lambda: agad,
        "agad-no-adcon": lambda: agad_without_adcon(agad),
        "plain-autoencoder": lambda: plain_autoencoder(agad),
        "deep-sad": lambda: DeepSAD(epochs=deep_sad_epochs, **common),
        "gradient-boosting": lambda: GradientBoosting(**common),
        "discriminator-alone": lambda: DiscriminatorClassifier(max_steps=max_steps, **common),
        "agad-d-score": lambda: AGADScore(agad, "discriminator", **common),
        "agad-combined-score": lambda: AGADScore(agad, "combined", **common),
        "isolation-forest": lambda: build_baseline("isolation-forest", agad),
        "pca": lambda: build_baseline("pca", agad),
    }
    if name not in builders:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTOR_NAMES)}")
    return builders[name]()


def load_cache(path: Path, expected: dict, **empty) -> dict:
    """A label benchmark's result cache, or a new one (with the `empty` fields) when there is none;
    a cache written under other settings is refused, so no run mixes two protocols."""
    if not path.exists():
        return {"settings": expected, **empty, "results": {}}
    try:
        cache = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path} is not a results file of this benchmark: {error}") from None
    if cache.get("settings") != expected:
        raise SystemExit(f"{path} was written with settings {cache.get('settings')}, not {expected}: pass another --out")
    return cache


def save_cache(path: Path, cache: dict) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(cache, indent=1))
    os.replace(temporary, path)
