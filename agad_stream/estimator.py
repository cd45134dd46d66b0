"""The AGAD estimator, with the scikit-learn / PyOD contract users already know.

``fit(X, y=None)`` trains on windows (``y`` marks labelled anomalies with 1);
``score_samples`` gives A(x) = ||x - G(x)||_2 (higher = more anomalous);
``predict`` compares it with a threshold calibrated on held-out normal
training windows at ``target_fpr``. The constructor only stores parameters.
"""

from __future__ import annotations

import importlib.metadata
import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from tqdm.auto import tqdm

from agad_stream.batchnorm import add_auxiliary_batchnorms
from agad_stream.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agad_stream.generators import build_generator
from agad_stream.networks import Discriminator
from agad_stream.training import AGADTrainer, TrainingConfig, init_weights
from agad_stream.validation import check_labels, check_windows


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class NotFittedError(RuntimeError):
    pass


class AGAD(BaseEstimator):
    """Adversarial Generative Anomaly Detection (Shi & Zhang 2023) for 1D and 2D windows.

    Parameters
    ----------
    generator: name of a registered generator ("naive", "unet" or your own).
    generator_options: extra keyword arguments for the generator factory.
    channels, latent_dim: widths of the conv stages (G and D) and G's bottleneck size.
    epochs, batch_size, lr: training budget (the paper: Adam, lr 2e-4, batch 256).
    lambda_adv, lambda_con, lambda_adcon, lambda_lat: loss weights (paper: 1, 50, 15, 5); 0 turns a term off.
    aux_bn, freeze_bn: AdvProp auxiliary BN for pseudo-anomalies, Freeze-BN for labelled anomalies.
    anomaly_loss: "reciprocal" (Algorithm 1 read literally) or "margin" (bounded alternative).
    anomalies_per_batch: labelled anomalies oversampled into every batch (default batch_size // 8, the paper's 32 of 256).
    target_fpr: false-positive rate on held-out normal windows that sets ``threshold_``.
    validation_fraction: share of normal training windows held out of training to calibrate the threshold.
    score_batch_size: windows per forward pass when scoring.
    random_state: seed; a CPU run with the same seed is reproducible.
    device: "auto" (CUDA when available), "cpu", "cuda", "cuda:1"...
    verbose: show progress bars.
    """

    def __init__(
        self,
        generator: str = "naive",
        generator_options: dict | None = None,
        channels: Sequence[int] = (64, 128, 256),
        latent_dim: int = 100,
        epochs: int = 15,
        batch_size: int = 256,
        lr: float = 2e-4,
        lambda_adv: float = 1.0,
        lambda_con: float = 50.0,
        lambda_adcon: float = 15.0,
        lambda_lat: float = 5.0,
        aux_bn: bool = True,
        freeze_bn: bool = True,
        anomaly_loss: str = "reciprocal",
        anomaly_margin: float = 1.0,
        anomalies_per_batch: int | None = None,
        target_fpr: float = 0.01,
        validation_fraction: float = 0.1,
        score_batch_size: int = 512,
        random_state: int | None = None,
        device: str = "auto",
        verbose: bool = True,
    ):
        self.generator = generator
        self.generator_options = generator_options
        self.channels = channels
        self.latent_dim = latent_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lambda_adv = lambda_adv
        self.lambda_con = lambda_con
        self.lambda_adcon = lambda_adcon
        self.lambda_lat = lambda_lat
        self.aux_bn = aux_bn
        self.freeze_bn = freeze_bn
        self.anomaly_loss = anomaly_loss
        self.anomaly_margin = anomaly_margin
        self.anomalies_per_batch = anomalies_per_batch
        self.target_fpr = target_fpr
        self.validation_fraction = validation_fraction
        self.score_batch_size = score_batch_size
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ building
    def _training_config(self) -> TrainingConfig:
        return TrainingConfig(
            lambda_adv=self.lambda_adv, lambda_con=self.lambda_con, lambda_adcon=self.lambda_adcon,
            lambda_lat=self.lambda_lat, aux_bn=self.aux_bn, freeze_bn=self.freeze_bn,
            anomaly_loss=self.anomaly_loss, anomaly_margin=self.anomaly_margin, lr=self.lr,
        )

    def _build_networks(self, window_shape: Sequence[int]) -> None:
        channels, *spatial = window_shape
        ndim = len(spatial)
        options = {"channels": tuple(self.channels), "latent_dim": self.latent_dim, **(self.generator_options or {})}
        self.generator_ = add_auxiliary_batchnorms(build_generator(self.generator, ndim, channels, spatial, **options))
        self.discriminator_ = add_auxiliary_batchnorms(Discriminator(ndim, channels, spatial, tuple(self.channels)))
        self.device_ = resolve_device(self.device)
        self.generator_.to(self.device_)
        self.discriminator_.to(self.device_)

    def _check_params(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 2):
            raise ValueError(f"batch_size must be an integer >= 2 (batch norm needs 2 samples), got {self.batch_size!r}")
        if not 0 < self.target_fpr < 1:
            raise ValueError(f"target_fpr must lie in (0, 1), got {self.target_fpr}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {self.validation_fraction}")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> "AGAD":
        """Train on windows ``X``; ``y`` (optional) marks labelled anomalies with 1."""
        self._check_params()
        X = check_windows(X)
        y = np.zeros(len(X), np.int8) if y is None else check_labels(y, len(X))
        rng = np.random.default_rng(self.random_state)
        if self.random_state is not None:
            torch.manual_seed(self.random_state)

        normal = rng.permutation(np.flatnonzero(y == 0))
        anomalous = np.flatnonzero(y == 1)
        n_validation = int(round(self.validation_fraction * len(normal)))
        if len(normal) - n_validation < 2:
            raise ValueError(f"need at least 2 normal training windows after the hold-out, got {len(normal) - n_validation}")
        validation, train = normal[:n_validation], normal[n_validation:]

        self.window_shape_ = tuple(X.shape[1:])
        axes = (0, *range(2, X.ndim))
        self.mean_ = X[train].mean(axis=axes).astype(np.float32)
        self.std_ = np.maximum(X[train].std(axis=axes), 1e-8).astype(np.float32)
        self._build_networks(self.window_shape_)
        init_weights(self.generator_)
        init_weights(self.discriminator_)
        trainer = AGADTrainer(self.generator_, self.discriminator_, self._training_config())

        Xn = self._normalise(X)
        self.history_ = []
        epochs = tqdm(range(self.epochs), desc="AGAD epochs", unit="epoch", disable=not self.verbose)
        for _ in epochs:
            totals: dict[str, float] = {}
            batches = list(self._batches(train, anomalous, rng))
            for normal_idx, anomaly_idx in tqdm(batches, desc="batches", leave=False, disable=not self.verbose):
                x = self._to_device(Xn[normal_idx])
                x_a = self._to_device(Xn[anomaly_idx]) if len(anomaly_idx) else None
                for name, value in trainer.step(x, x_a).items():
                    totals[name] = totals.get(name, 0.0) + value / len(batches)
            self.history_.append(totals)
            epochs.set_postfix({k: f"{v:.3g}" for k, v in totals.items() if k in ("L_D", "L_G", "L_con")})
        self.d_reinitialisations_ = trainer.d_reinitialisations

        calibration = Xn[validation] if len(validation) else Xn[train]
        if not len(validation):
            warnings.warn("validation_fraction=0: the threshold is calibrated on training windows and will be optimistic")
        self.calibration_scores_ = self._score_normalised(calibration)[0]
        self.threshold_ = float(np.quantile(self.calibration_scores_, 1 - self.target_fpr, method="higher"))
        return self

    def _batches(self, train: np.ndarray, anomalous: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch = one pass over the normal windows; with labelled anomalies every batch
        carries ``anomalies_per_batch`` of them, drawn without replacement and recycled (oversampling)."""
        k = 0
        if len(anomalous):
            k = self.anomalies_per_batch if self.anomalies_per_batch is not None else max(1, self.batch_size // 8)
            k = min(k, self.batch_size - 2)
        per_batch = self.batch_size - k
        order = rng.permutation(train)
        pool = np.empty(0, dtype=np.int64)
        for start in range(0, len(order), per_batch):
            normal_idx = order[start:start + per_batch]
            if len(normal_idx) < 2:
                break
            if k:
                while len(pool) < k:
                    pool = np.concatenate([pool, rng.permutation(anomalous)])
                anomaly_idx, pool = pool[:k], pool[k:]
            else:
                anomaly_idx = np.empty(0, dtype=np.int64)
            yield normal_idx, anomaly_idx

    # ------------------------------------------------------------------ scoring
    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("this AGAD model is not fitted yet: call fit(X) or AGAD.load(path) first")

    def _normalise(self, X: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (X.ndim - 2)
        return (X - self.mean_.reshape(shape)) / self.std_.reshape(shape)

    def _to_device(self, X: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if self.device_.type == "cuda":
            return tensor.pin_memory().to(self.device_, non_blocking=True)
        return tensor.to(self.device_)

    def _score_normalised(self, Xn: np.ndarray, with_residuals: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        self.generator_.eval()
        scores, residuals = [], []
        with torch.inference_mode():
            for start in range(0, len(Xn), self.score_batch_size):
                x = self._to_device(Xn[start:start + self.score_batch_size])
                residual = x - self.generator_(x)
                scores.append(residual.flatten(1).norm(dim=1).cpu().numpy())
                if with_residuals:
                    residuals.append(residual.cpu().numpy())
        return np.concatenate(scores), (np.concatenate(residuals) if with_residuals else None)

    def score_and_residuals(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Scores and residual maps x - G(x) (in input units) from a single pass."""
        self._check_fitted()
        X = check_windows(X, self.window_shape_)
        scores, residuals = self._score_normalised(self._normalise(X), with_residuals=True)
        shape = (1, -1) + (1,) * (X.ndim - 2)
        return scores, residuals * self.std_.reshape(shape)

    def score_samples(self, X) -> np.ndarray:
        """Anomaly score A(x) = ||x - G(x)||_2 in normalised units; higher = more anomalous."""
        self._check_fitted()
        X = check_windows(X, self.window_shape_)
        return self._score_normalised(self._normalise(X))[0]

    def decision_function(self, X) -> np.ndarray:
        """Score minus threshold: positive means flagged as anomalous."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        """1 for anomalous (score above the calibrated threshold), 0 for normal."""
        return (self.decision_function(X) > 0).astype(np.int8)

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
        params["channels"] = list(params["channels"])
        metadata = {
            "params": params,
            "window_shape": list(self.window_shape_),
            "normalisation": {"mean": self.mean_.tolist(), "std": self.std_.tolist()},
            "threshold": self.threshold_,
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
            model.calibration_scores_ = np.asarray(metadata["calibration_scores"], np.float32)
            model.history_ = metadata.get("history", [])
            model._build_networks(model.window_shape_)
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
