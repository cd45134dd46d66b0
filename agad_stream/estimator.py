"""The AGAD estimator, with the scikit-learn / PyOD contract users already know.

``fit(X, y=None)`` trains on windows (``y`` marks labelled anomalies with 1);
``score_samples`` gives A(x) = ||x - G(x)||_2 (higher = more anomalous);
``predict`` compares it with a threshold calibrated on held-out normal
training windows at ``target_fpr``. The constructor only stores parameters.
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import TypeVar

import numpy as np
import sklearn.exceptions
import torch
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from agad_stream.batchnorm import add_auxiliary_batchnorms
from agad_stream.calibration import TAILS, calibrate, rescale_training_scores
from agad_stream.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agad_stream.generators import build_generator
from agad_stream.networks import Discriminator, pad_to
from agad_stream.scaling import normalise, per_channel
from agad_stream.training import AGADTrainer, TrainingConfig, init_weights
from agad_stream.validation import check_labels, check_windows

log = logging.getLogger("agad_stream")

#: optimiser steps when neither max_steps nor epochs is set; early stopping usually ends sooner
DEFAULT_MAX_STEPS = 3000
#: labelled anomalies added to every batch when anomalies_per_batch is None (the paper's 32), fewer if fewer exist
DEFAULT_ANOMALIES_PER_BATCH = 32
CALIBRATIONS = ("holdout+training", "holdout", "cross-fit")
#: what score_samples returns: A(x) = ||x - G(x)||_2, D's opinion (minus its "real" logit), or
#: both as robust z-scores of the held-out normals, summed (see docs/with-labels.md)
SCORES = ("reconstruction", "discriminator", "combined")
#: the loss weights and training switches have one source: TrainingConfig's defaults are AGAD's
_TRAINING = TrainingConfig()
T = TypeVar("T")


def auto_batch_size(n_train: int) -> int:
    """Small batches for small data sets, so that a few hundred windows still give many steps."""
    return 32 if n_train < 2048 else 64


def auto_channels(n_train: int) -> tuple[int, ...]:
    """Conv widths that fit the data set's size: fewer parameters than windows' worth of evidence."""
    return (32, 64, 128) if n_train < 4096 else (64, 128, 256)


def auto_latent_dim(window_shape: Sequence[int]) -> int:
    """A bottleneck well below the window's size (8x8 images must not get 100 latent units)."""
    return int(np.clip(math.prod(window_shape) // 8, 16, 100))


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class NotFittedError(sklearn.exceptions.NotFittedError, RuntimeError):
    """Scoring before fit: scikit-learn's NotFittedError (what its tools catch), and a RuntimeError as before."""


class AGAD(BaseEstimator):
    """Adversarial Generative Anomaly Detection (Shi & Zhang 2023) for 1D and 2D windows.

    Parameters
    ----------
    generator: name of a registered generator ("naive", "unet", "unetpp" or your own).
    generator_options: extra keyword arguments for the generator factory.
    channels, latent_dim: widths of the conv stages (G and D) and G's bottleneck size;
        "auto" sizes them from the number of training windows and the window size.
    max_steps, epochs: training budget in optimiser steps, or in passes over the normal
        windows; with neither, up to DEFAULT_MAX_STEPS steps.
    batch_size: normal windows per step; "auto" is 32 below 2048 training windows, else 64.
    early_stopping, n_iter_no_change, validation_interval: stop when the held-out normal
        windows' reconstruction loss L_con has not improved for n_iter_no_change checks,
        made every validation_interval steps ("auto": about one epoch, 25 to 200 steps),
        and keep the best weights. Uses no labels.
    lr: Adam learning rate (the paper: 2e-4).
    lambda_adv, lambda_con, lambda_adcon, lambda_lat: loss weights (paper: 1, 50, 15, 5); 0 turns a term off.
    adcon, adcon_margin, adcon_warmup_steps: the pseudo-anomaly term: "paper" (-||x̂ - x̂'||_1,
        unbounded) or "hinge" (bounded at adcon_margin, in standard deviations of the data),
        with λ_adcon ramped up over the first adcon_warmup_steps.
    update_order: "g_first" (Algorithm 1) or "d_first".
    aux_bn, freeze_bn: AdvProp auxiliary BN for pseudo-anomalies, Freeze-BN for labelled anomalies.
    aux_bn_mode: how pseudo-anomaly passes normalise when aux_bn is on: "separate" (AdvProp:
        own statistics, scale and shift), "shared-affine" (own statistics, main scale and
        shift) or "frozen" (the main BN's running statistics, as at test time; nothing updated).
    anomaly_loss, anomaly_margin: the loss on labelled anomalies: "margin" (their mean error
        pushed up to anomaly_margin standard deviations of the data; bounded; chosen on
        Fashion-MNIST validation at γ = 0.05), "relative-margin" (each one's error pushed up to
        anomaly_margin times the batch's mean normal error) or "reciprocal" (Algorithm 1 read literally).
    anomalies_per_batch: labelled anomalies added to every batch, oversampled
        (default min(32, available), the paper's 32 of 256).
    target_fpr: false-positive rate on held-out normal windows that sets ``threshold_``.
    validation_fraction: share of normal training windows held out of training to calibrate
        the threshold and to stop early.
    calibration: which normal scores set the threshold: "holdout+training" (the held-out windows'
        plus the training windows', lifted to the held-out level: no extra fit; chosen on
        held-out normals of ECG, FSDD and digits, docs/benchmarks.md), "holdout" (the held-out
        windows only: ~30 for 300 windows) or "cross-fit" (the held-out windows' plus out-of-fold
        scores of every training window, from calibration_folds extra fits of best_step_ steps
        each: k times the training cost).
    threshold_tail: "empirical" (the 1 - target_fpr quantile of those scores) or "pot" (a
        generalised Pareto fit to their largest tenth, SPOT's peaks over threshold, which
        extrapolates beyond the largest score when there are too few).
    anomaly_score: what ``score_samples`` returns: "reconstruction", A(x) = ||x - G(x)||_2 (the paper's);
        "discriminator", minus D's "real" logit (D learns the labelled anomalies as fake); or
        "combined", the two as robust z-scores (median, 1.4826 MAD) of the held-out normals,
        summed. On MIT-BIH with one labelled beat type, "combined" ranked that type best on
        validation and A(x) the unlabelled types (docs/with-labels.md).
    score_batch_size: windows per forward pass when scoring.
    random_state: seed; a CPU run with the same seed is reproducible.
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1"...
    verbose: a progress bar (on a terminal only) and a log line per fit.
    warm_start: refit from the current weights and normalisation instead of from scratch.
    """

    def __init__(
        self,
        generator: str = "naive",
        generator_options: dict | None = None,
        channels: Sequence[int] | str = "auto",
        latent_dim: int | str = "auto",
        max_steps: int | None = None,
        epochs: int | None = None,
        batch_size: int | str = "auto",
        early_stopping: bool = True,
        n_iter_no_change: int = 10,
        validation_interval: int | str = "auto",
        lr: float = _TRAINING.lr,
        lambda_adv: float = _TRAINING.lambda_adv,
        lambda_con: float = _TRAINING.lambda_con,
        lambda_adcon: float = _TRAINING.lambda_adcon,
        lambda_lat: float = _TRAINING.lambda_lat,
        adcon: str = _TRAINING.adcon,
        adcon_margin: float = _TRAINING.adcon_margin,
        adcon_warmup_steps: int = _TRAINING.adcon_warmup_steps,
        update_order: str = _TRAINING.update_order,
        aux_bn: bool = _TRAINING.aux_bn,
        aux_bn_mode: str = _TRAINING.aux_bn_mode,
        freeze_bn: bool = _TRAINING.freeze_bn,
        anomaly_loss: str = _TRAINING.anomaly_loss,
        anomaly_margin: float = _TRAINING.anomaly_margin,
        anomalies_per_batch: int | None = None,
        target_fpr: float = 0.01,
        validation_fraction: float = 0.1,
        calibration: str = "holdout+training",
        calibration_folds: int = 5,
        threshold_tail: str = "pot",
        anomaly_score: str = "reconstruction",
        score_batch_size: int = 512,
        random_state: int | None = None,
        device: str = "auto",
        verbose: bool = True,
        warm_start: bool = False,
    ):
        self.generator = generator
        self.generator_options = generator_options
        self.channels = channels
        self.latent_dim = latent_dim
        self.max_steps = max_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.validation_interval = validation_interval
        self.lr = lr
        self.lambda_adv = lambda_adv
        self.lambda_con = lambda_con
        self.lambda_adcon = lambda_adcon
        self.lambda_lat = lambda_lat
        self.adcon = adcon
        self.adcon_margin = adcon_margin
        self.adcon_warmup_steps = adcon_warmup_steps
        self.update_order = update_order
        self.aux_bn = aux_bn
        self.aux_bn_mode = aux_bn_mode
        self.freeze_bn = freeze_bn
        self.anomaly_loss = anomaly_loss
        self.anomaly_margin = anomaly_margin
        self.anomalies_per_batch = anomalies_per_batch
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.threshold_tail = threshold_tail
        self.anomaly_score = anomaly_score
        self.score_batch_size = score_batch_size
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.warm_start = warm_start

    # ------------------------------------------------------------------ building
    def _training_config(self) -> TrainingConfig:
        """TrainingConfig from the constructor parameters of the same names."""
        params = self.get_params(deep=False)
        return TrainingConfig(**{f.name: params[f.name] for f in fields(TrainingConfig) if f.name in params})

    def _resolve_architecture(self, n_train: int) -> None:
        """Fix the "auto" widths and bottleneck for this data set (stored with the checkpoint)."""
        self.channels_ = tuple(auto_channels(n_train) if self.channels == "auto" else self.channels)
        self.latent_dim_ = int(auto_latent_dim(self.window_shape_[1:]) if self.latent_dim == "auto" else self.latent_dim)

    def _build_networks(self) -> None:
        channels, *spatial = self.window_shape_
        ndim = len(spatial)
        options = {"channels": self.channels_, "latent_dim": self.latent_dim_, **(self.generator_options or {})}
        share = self.aux_bn_mode == "shared-affine"
        self.generator_ = add_auxiliary_batchnorms(build_generator(self.generator, ndim, channels, spatial, **options), share)
        self.discriminator_ = add_auxiliary_batchnorms(Discriminator(ndim, channels, spatial, self.channels_), share)
        self.device_ = resolve_device(self.device)
        self.generator_.to(self.device_)
        self.discriminator_.to(self.device_)

    def _check_params(self) -> None:
        for name in ("max_steps", "epochs"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 2 (batch norm needs 2 samples), got {self.batch_size!r}")
        if self.validation_interval != "auto" and not (isinstance(self.validation_interval, int) and self.validation_interval >= 1):
            raise ValueError(f"validation_interval must be 'auto' or a positive integer, got {self.validation_interval!r}")
        if not (isinstance(self.n_iter_no_change, int) and self.n_iter_no_change >= 1):
            raise ValueError(f"n_iter_no_change must be a positive integer, got {self.n_iter_no_change!r}")
        if not 0 < self.target_fpr < 1:
            raise ValueError(f"target_fpr must lie in (0, 1), got {self.target_fpr}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if not (isinstance(self.calibration_folds, int) and self.calibration_folds >= 2):
            raise ValueError(f"calibration_folds must be an integer >= 2, got {self.calibration_folds!r}")
        if self.threshold_tail not in TAILS:
            raise ValueError(f"threshold_tail must be one of {TAILS}, got {self.threshold_tail!r}")
        if self.anomaly_score not in SCORES:
            raise ValueError(f"anomaly_score must be one of {SCORES}, got {self.anomaly_score!r}")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> "AGAD":
        """Train on windows ``X``; ``y`` (optional) marks labelled anomalies with 1."""
        self._check_params()
        trainer_config = self._training_config()
        X = check_windows(X)
        y = np.zeros(len(X), np.int8) if y is None else check_labels(y, len(X))
        rng = np.random.default_rng(self.random_state)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)

        normal = rng.permutation(np.flatnonzero(y == 0))
        anomalous = np.flatnonzero(y == 1)
        n_validation = int(round(self.validation_fraction * len(normal)))
        if len(normal) - n_validation < 2:
            raise ValueError(f"need at least 2 normal training windows after the hold-out, got {len(normal) - n_validation} "
                             f"(n_samples={len(X)}, validation_fraction={self.validation_fraction})")
        validation, train = normal[:n_validation], normal[n_validation:]

        warm = self.warm_start and hasattr(self, "generator_")
        if warm and tuple(X.shape[1:]) != self.window_shape_:
            raise ValueError(f"warm_start: windows of shape {X.shape[1:]} do not fit this model's {self.window_shape_}")
        # the folds of a cross-fit start where this fit starts: from these weights when warm
        fold_template = copy.deepcopy(self) if warm and self.calibration == "cross-fit" else None
        if not warm:
            self.window_shape_ = tuple(X.shape[1:])
            axes = (0, *range(2, X.ndim))
            self.mean_ = X[train].mean(axis=axes).astype(np.float32)
            self.std_ = np.maximum(X[train].std(axis=axes), 1e-8).astype(np.float32)
            self._resolve_architecture(len(train))
            self._build_networks()
            init_weights(self.generator_)
            init_weights(self.discriminator_)
        trainer = AGADTrainer(self.generator_, self.discriminator_, trainer_config)

        Xn = self._normalise(X)
        self.batch_size_ = auto_batch_size(len(train)) if self.batch_size == "auto" else self.batch_size
        self._train(trainer, Xn, train, validation, anomalous, rng)
        self.d_reinitialisations_ = trainer.d_reinitialisations

        self._calibrate(X, y, Xn, train, validation, anomalous, fold_template)
        return self

    def _calibrate(self, X: np.ndarray, y: np.ndarray, Xn: np.ndarray, train: np.ndarray, validation: np.ndarray,
                   anomalous: np.ndarray, fold_template: "AGAD | None") -> None:
        """Set ``threshold_`` from normal scores no model trained on (see agad_stream.calibration)."""
        sources = {"holdout": len(validation)}
        self.score_scale_ = self._fit_score_scale(Xn[validation] if len(validation) else Xn[train])
        scores = [self._score(Xn[validation])] if len(validation) else []
        started = time.perf_counter()
        if self.calibration == "cross-fit":
            scores.append(self._out_of_fold_scores(X, y, train, anomalous, fold_template))
            sources["cross-fit"] = len(train)
        elif self.calibration == "holdout+training" and len(validation):
            scores.append(rescale_training_scores(scores[0], self._score(Xn[train])))
            sources["training, rescaled"] = len(train)
        elif not len(validation):
            warnings.warn("validation_fraction=0: the threshold is calibrated on training windows and will be optimistic")
            scores.append(self._score(Xn[train]))
            sources["training"] = len(train)
        self.calibration_scores_ = np.concatenate(scores).astype(np.float32)
        result = calibrate(self.calibration_scores_, self.target_fpr, self.threshold_tail)
        self.threshold_ = result.threshold
        self.calibration_ = {**result.as_dict(), "scores_from": sources,
                             "seconds": round(time.perf_counter() - started, 2)}
        if self.verbose:
            log.info("AGAD %s", result.summary())
        if not result.supported:
            hint = ("; calibration='holdout+training' scores every normal training window" if self.calibration == "holdout"
                    else "")
            warnings.warn(result.shortfall() + hint)

    def _out_of_fold_scores(self, X: np.ndarray, y: np.ndarray, train: np.ndarray, anomalous: np.ndarray,
                            fold_template: "AGAD | None") -> np.ndarray:
        """Scores of the training normals, each from a fold model that never trained on it (same
        architecture, batch and budget: best_step_ steps, no early stopping, which would peek)."""
        k = self.calibration_folds
        if len(train) < 2 * k:
            raise ValueError(f"calibration='cross-fit' needs at least {2 * k} normal training windows, got {len(train)}")
        scores = np.empty(len(train), np.float32)
        for fold in range(k):
            held = np.arange(fold, len(train), k)
            fitted = np.delete(train, held)
            model = copy.deepcopy(fold_template) if fold_template is not None else AGAD(**self.get_params())
            model.set_params(max_steps=self.best_step_, epochs=None, early_stopping=False, validation_fraction=0.0,
                             calibration="holdout", threshold_tail="empirical", channels=self.channels_,
                             latent_dim=self.latent_dim_, batch_size=self.batch_size_, verbose=False,
                             random_state=None if self.random_state is None else self.random_state + 1 + fold)
            rows = np.concatenate([fitted, anomalous])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the fold's own (training-window) threshold is not used
                model.fit(X[rows], y[rows])
            scores[held] = self._combine(model._score_parts(model._normalise(X[train[held]])))  # on this model's scale
        return scores

    def _train(self, trainer: AGADTrainer, Xn: np.ndarray, train: np.ndarray, validation: np.ndarray,
               anomalous: np.ndarray, rng: np.random.Generator) -> None:
        """Step until the budget is spent or validation L_con stops improving; keep the best weights."""
        steps_per_epoch = max(1, len(train) // self.batch_size_)
        if self.max_steps is not None:
            budget = self.max_steps
        elif self.epochs is not None:
            budget = self.epochs * steps_per_epoch
        else:
            budget = DEFAULT_MAX_STEPS
        interval = (int(np.clip(steps_per_epoch, 25, 200)) if self.validation_interval == "auto"
                    else self.validation_interval)
        stopping = self.early_stopping and len(validation) > 0
        X_val = Xn[validation]

        self.history_ = []
        best_loss, best_state, checks_without_gain = math.inf, None, 0
        totals: dict[str, float] = {}
        steps_since_check = 0
        bar = tqdm(total=budget, desc="AGAD", unit="step", disable=not (self.verbose and sys.stderr.isatty()))
        batches = self._batches(train, anomalous, rng)
        for step in range(1, budget + 1):
            normal_idx, anomaly_idx = next(batches)
            x_a = self._to_device(Xn[anomaly_idx]) if len(anomaly_idx) else None
            for name, value in trainer.step(self._to_device(Xn[normal_idx]), x_a).items():
                totals[name] = totals.get(name, 0.0) + value
            steps_since_check += 1
            bar.update()
            if step % interval and step != budget:
                continue
            record = {"step": step, **{k: v / steps_since_check for k, v in totals.items()}}
            totals, steps_since_check = {}, 0
            if len(validation):
                record["val_L_con"] = self._reconstruction_loss(X_val)
            self.history_.append(record)
            bar.set_postfix({k: f"{record[k]:.3g}" for k in ("L_G", "L_con", "val_L_con") if k in record})
            if not stopping:
                continue
            if record["val_L_con"] < best_loss * (1 - 1e-3):
                best_loss, checks_without_gain = record["val_L_con"], 0
                best_state = (step, copy.deepcopy(self.generator_.state_dict()),
                              copy.deepcopy(self.discriminator_.state_dict()))
            else:
                checks_without_gain += 1
                if checks_without_gain >= self.n_iter_no_change:
                    break
        bar.close()
        self.n_steps_ = step
        self.best_step_ = step
        if best_state is not None:
            self.best_step_ = best_state[0]
            self.generator_.load_state_dict(best_state[1])
            self.discriminator_.load_state_dict(best_state[2])
        if self.verbose:
            log.info("AGAD trained %d steps (%.1f epochs of %d windows, batch %d); kept step %d%s",
                     self.n_steps_, self.n_steps_ / steps_per_epoch, len(train), self.batch_size_, self.best_step_,
                     f", validation L_con {best_loss:.4g}" if best_state else "")

    def _reconstruction_loss(self, Xn: np.ndarray) -> float:
        """Mean |x - G(x)| (L_con) of normalised windows, in test mode."""
        return sum(self._per_batch(Xn, lambda residual: float(residual.abs().sum()))) / Xn.size

    def _batches(self, train: np.ndarray, anomalous: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Endless batches: ``batch_size_`` normal windows, reshuffled every pass, plus ``k`` labelled
        anomalies drawn without replacement and recycled (oversampling), k = min(32, available) by default."""
        k = 0
        if len(anomalous):
            k = (min(DEFAULT_ANOMALIES_PER_BATCH, len(anomalous)) if self.anomalies_per_batch is None
                 else self.anomalies_per_batch)
        per_batch = min(self.batch_size_, len(train))
        pool = np.empty(0, dtype=np.int64)
        while True:
            order = rng.permutation(train)
            for start in range(0, len(order) - per_batch + 1, per_batch):
                if k:
                    while len(pool) < k:
                        pool = np.concatenate([pool, rng.permutation(anomalous)])
                    anomaly_idx, pool = pool[:k], pool[k:]
                else:
                    anomaly_idx = np.empty(0, dtype=np.int64)
                yield order[start:start + per_batch], anomaly_idx

    # ------------------------------------------------------------------ scoring
    @property
    def n_features_in_(self) -> int:
        """Values per window seen in fit (scikit-learn's name; F for 2D input [N, F])."""
        self._check_fitted()
        return math.prod(self.window_shape_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("this AGAD model is not fitted yet: call fit(X) or AGAD.load(path) first")

    def _normalise(self, X: np.ndarray) -> np.ndarray:
        return normalise(X, self.mean_, self.std_)

    def _to_device(self, X: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if self.device_.type == "cuda":
            return tensor.pin_memory().to(self.device_, non_blocking=True)
        return tensor.to(self.device_)

    def _in_batches(self, network: torch.nn.Module, Xn: np.ndarray, step: Callable[[torch.Tensor], T]) -> list[T]:
        """`step(x)` for each batch x of `score_batch_size` normalised windows, with `network` in
        test mode and no gradients: the one inference loop of scoring and of the validation loss."""
        network.eval()
        with torch.inference_mode():
            return [step(self._to_device(Xn[start:start + self.score_batch_size]))
                    for start in range(0, len(Xn), self.score_batch_size)]

    def _per_batch(self, Xn: np.ndarray, reduce: Callable[[torch.Tensor], T]) -> list[T]:
        """`reduce(x - G(x))` for each batch of normalised windows."""
        return self._in_batches(self.generator_, Xn, lambda x: reduce(x - self.generator_(x)))

    def _score_normalised(self, Xn: np.ndarray, with_residuals: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        parts = self._per_batch(Xn, lambda residual: (residual.flatten(1).norm(dim=1).cpu().numpy(),
                                                      residual.cpu().numpy() if with_residuals else None))
        scores = np.concatenate([score for score, _ in parts])
        return scores, (np.concatenate([residual for _, residual in parts]) if with_residuals else None)

    def _discriminator_score(self, Xn: np.ndarray) -> np.ndarray:
        """Minus D's "real" logit (main BN, test mode): D is trained to call pseudo-anomalies and
        labelled anomalies fake, so a high value is what D has learned to take for an anomaly."""
        logits = self._in_batches(self.discriminator_, Xn, lambda x: self.discriminator_(x)[0].cpu())
        return -torch.cat(logits).numpy().astype(np.float32)

    def _score_parts(self, Xn: np.ndarray, reconstruction: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The raw scores ``anomaly_score`` needs, by name; ``reconstruction``: A(x) when already computed."""
        parts = {}
        if self.anomaly_score != "discriminator":
            parts["reconstruction"] = self._score_normalised(Xn)[0] if reconstruction is None else reconstruction
        if self.anomaly_score != "reconstruction":
            parts["discriminator"] = self._discriminator_score(Xn)
        return parts

    def _fit_score_scale(self, Xn_normal: np.ndarray) -> dict[str, list[float]]:
        """Median and 1.4826 MAD of each raw score on normal windows no model trained on ("combined" only)."""
        if self.anomaly_score != "combined":
            return {}
        scale = {}
        for name, part in self._score_parts(Xn_normal).items():
            median = float(np.median(part))
            scale[name] = [median, max(1.4826 * float(np.median(np.abs(part - median))), 1e-12)]
        return scale

    def _combine(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        if self.anomaly_score != "combined":
            return parts[self.anomaly_score]
        return sum((part - self.score_scale_[name][0]) / self.score_scale_[name][1]
                   for name, part in parts.items()).astype(np.float32)

    def _score(self, Xn: np.ndarray) -> np.ndarray:
        return self._combine(self._score_parts(Xn))

    def score_and_residuals(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Scores and residual maps x - G(x) (in input units) from a single pass of G."""
        self._check_fitted()
        X = check_windows(X, self.window_shape_)
        Xn = self._normalise(X)
        reconstruction, residuals = self._score_normalised(Xn, with_residuals=True)
        scores = self._combine(self._score_parts(Xn, reconstruction))  # G runs once
        return scores, residuals * per_channel(self.std_, X.ndim)

    def score_samples(self, X) -> np.ndarray:
        """The anomaly score chosen by ``anomaly_score`` (default A(x) = ||x - G(x)||_2, in normalised
        units); higher = more anomalous."""
        self._check_fitted()
        X = check_windows(X, self.window_shape_)
        return self._score(self._normalise(X))

    def decision_function(self, X) -> np.ndarray:
        """Score minus threshold: positive means flagged as anomalous."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        """1 for anomalous (score above the calibrated threshold), 0 for normal."""
        return (self.decision_function(X) > 0).astype(np.int8)

    def latent(self, X) -> np.ndarray:
        """The generator's bottleneck code of each window (n, latent_dim): what G summarises a window to,
        so windows close here look alike to the model (the review queue's "diverse" order uses it)."""
        self._check_fitted()
        X = check_windows(X, self.window_shape_)
        generator = self.generator_
        if not all(hasattr(generator, name) for name in ("encoder", "to_latent", "padded_shape")):
            raise ValueError(f"the {self.generator!r} generator has no encoder/to_latent bottleneck to read")
        codes = self._in_batches(generator, self._normalise(X), lambda x: generator.to_latent(
            generator.encoder(pad_to(x, generator.padded_shape))[-1]).flatten(1).cpu().numpy())
        return np.concatenate(codes).astype(np.float64)

    def residuals(self, X) -> np.ndarray:
        """Explanation maps: the element-wise residual x - G(x), in the input's units."""
        return self.score_and_residuals(X)[1]

    def reconstruct(self, X) -> np.ndarray:
        """G(x) in the input's units."""
        X = check_windows(X, getattr(self, "window_shape_", None))
        return X - self.residuals(X)

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> None:
        """Write the checkpoint directory ``path`` (weights.pt + agad.json)."""
        self._check_fitted()
        params = self.get_params()
        if not isinstance(params["channels"], str):
            params["channels"] = list(params["channels"])
        metadata = {
            "params": params,
            "window_shape": list(self.window_shape_),
            "architecture": {"channels": list(self.channels_), "latent_dim": self.latent_dim_},
            "training": {"steps": self.n_steps_, "kept_step": self.best_step_, "batch_size": self.batch_size_},
            "normalisation": {"mean": self.mean_.tolist(), "std": self.std_.tolist()},
            "threshold": self.threshold_,
            "score_scale": self.score_scale_,
            "calibration": self.calibration_,
            "calibration_scores": self.calibration_scores_.tolist(),
            "history": self.history_,
            "versions": {
                "agad_stream": _version("agad-stream"),
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
        }
        state = {"generator": self.generator_.state_dict(), "discriminator": self.discriminator_.state_dict()}
        save_checkpoint(path, state, metadata)

    @classmethod
    def load(cls, path, device: str | None = None) -> "AGAD":
        """Load a checkpoint written by :meth:`save`; refuses tampered or mismatched ones."""
        state, metadata = load_checkpoint(path)
        try:
            params = dict(metadata["params"])
            if device is not None:
                params["device"] = device
            model = cls(**params)
            model.window_shape_ = tuple(metadata["window_shape"])
            model.mean_ = np.asarray(metadata["normalisation"]["mean"], np.float32)
            model.std_ = np.asarray(metadata["normalisation"]["std"], np.float32)
            model.threshold_ = float(metadata["threshold"])
            model.score_scale_ = dict(metadata.get("score_scale", {}))
            model.calibration_scores_ = np.asarray(metadata["calibration_scores"], np.float32)
            # checkpoints from before the calibration report: describe their empirical threshold
            model.calibration_ = metadata.get("calibration") or {
                **calibrate(model.calibration_scores_, model.target_fpr, "empirical").as_dict(),
                "threshold": model.threshold_, "scores_from": {"holdout": len(model.calibration_scores_)}}
            model.history_ = metadata.get("history", [])
            architecture = metadata.get("architecture", {"channels": params["channels"], "latent_dim": params["latent_dim"]})
            model.channels_ = tuple(architecture["channels"])
            model.latent_dim_ = int(architecture["latent_dim"])
            training = metadata.get("training", {})
            model.n_steps_ = training.get("steps")
            model.best_step_ = training.get("kept_step")
            model.batch_size_ = training.get("batch_size", params.get("batch_size"))
            model._build_networks()
            model.generator_.load_state_dict(state["generator"])
            model.discriminator_.load_state_dict(state["discriminator"])
        except (KeyError, TypeError, RuntimeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {path} does not fit an AGAD model: {error}") from None
        if model.mean_.shape != (model.window_shape_[0],) or not math.isfinite(model.threshold_):
            raise CheckpointError(f"checkpoint {path} has inconsistent normalisation or threshold")
        model.generator_.eval()
        return model


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
