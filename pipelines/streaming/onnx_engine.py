"""AGAD's scoring on ONNX Runtime: numpy and onnxruntime only, never torch.

`OnnxAGAD` reads a published checkpoint's agad.json (threshold, normalisation, window
shape) and its generator.onnx, both checked against the SHA-256s agad.json records
(weights.pt too, so a tampered checkpoint is refused on either engine), and offers the
scoring half of `AGAD`'s interface: `score_samples` and `score_and_residuals` compute
A(x) = ||x - G(x)||_2 on normalised windows exactly as AGAD does, with G run by ONNX
Runtime on the CPU.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnxruntime

from agad_stream.checkpoint import (
    ONNX_FILE, ONNX_SHA256_KEY, WEIGHTS_FILE, CheckpointError, read_metadata, verified_file,
)
from agad_stream.scaling import normalise, per_channel
from agad_stream.validation import check_windows

DEVICE = "cpu (onnxruntime)"


class OnnxAGAD:
    """A fitted AGAD checkpoint scored with ONNX Runtime."""

    device_ = DEVICE

    def __init__(self, directory: str | os.PathLike, threads: int = 1):
        directory = Path(directory)
        metadata = read_metadata(directory)
        if ONNX_SHA256_KEY not in metadata:
            raise CheckpointError(f"{directory} has no {ONNX_FILE}: `agad-stream publish` exports one")
        score = metadata.get("params", {}).get("anomaly_score", "reconstruction")
        if score != "reconstruction":
            raise CheckpointError(f"{directory} scores with anomaly_score={score!r}, which needs the discriminator; "
                                  f"{ONNX_FILE} holds the generator only: serve it with --engine torch")
        verified_file(directory, WEIGHTS_FILE, "weights_sha256", metadata)
        graph = verified_file(directory, ONNX_FILE, ONNX_SHA256_KEY, metadata)
        try:
            self.window_shape_ = tuple(int(s) for s in metadata["window_shape"])
            self.mean_ = np.asarray(metadata["normalisation"]["mean"], np.float32)
            self.std_ = np.asarray(metadata["normalisation"]["std"], np.float32)
            self.threshold_ = float(metadata["threshold"])
            self.score_batch_size = int(metadata["params"].get("score_batch_size", 512))
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"checkpoint {directory} does not fit an AGAD model: {error!r}") from None
        if self.mean_.shape != (self.window_shape_[0],) or not math.isfinite(self.threshold_):
            raise CheckpointError(f"checkpoint {directory} has inconsistent normalisation or threshold")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def score_and_residuals(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Scores and residual maps x - G(x) (in input units), as AGAD.score_and_residuals."""
        X = check_windows(X, self.window_shape_)
        residuals = self._normalised_residuals(normalise(X, self.mean_, self.std_))
        scores = np.linalg.norm(residuals.reshape(len(residuals), -1), axis=1)
        return scores, residuals * per_channel(self.std_, X.ndim)

    def score_samples(self, X) -> np.ndarray:
        return self.score_and_residuals(X)[0]

    def _normalised_residuals(self, Xn: np.ndarray) -> np.ndarray:
        Xn = np.ascontiguousarray(Xn, dtype=np.float32)
        return np.concatenate([
            chunk - self.session.run(None, {self.input_name: chunk})[0]
            for chunk in (Xn[start:start + self.score_batch_size] for start in range(0, len(Xn), self.score_batch_size))
        ])
