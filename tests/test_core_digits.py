"""Integration: AGAD's defaults train enough on a small real data set (about 80 normal images)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from agad_stream import AGAD


@pytest.mark.slow  # the defaults train for hundreds of steps: about 40 s
def test_defaults_train_enough_steps_on_small_data_and_separate_an_unseen_digit():
    digits = load_digits()
    X = digits.images.astype(np.float32)[:, None]
    y = (digits.target != 0).astype(int)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=digits.target, random_state=0)
    model = AGAD(random_state=0, verbose=False, device="cpu").fit(X_train[y_train == 0])
    # ~80 training images: 256-image batches would give one step per epoch; the defaults must give hundreds.
    assert model.batch_size_ == 32 and model.n_steps_ >= 200, (model.batch_size_, model.n_steps_)
    assert model.latent_dim_ < 64, "an 8x8 image must not get a bottleneck as wide as itself"
    auroc = roc_auc_score(y_test, model.score_samples(X_test))
    assert auroc >= 0.95, f"AUROC {auroc:.3f}"
