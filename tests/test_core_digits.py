"""Integration: AGAD separates an unseen digit class from the normal one on real data."""

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from agad_stream import AGAD


def test_one_vs_rest_on_sklearn_digits_reaches_auroc_090():
    digits = load_digits()
    X = (digits.images / 16.0).astype(np.float32)[:, None]
    y = (digits.target != 0).astype(int)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, stratify=digits.target, random_state=0)
    model = AGAD(channels=(32, 64, 128), epochs=40, batch_size=32, random_state=0, verbose=False, device="cpu")
    model.fit(X_train[y_train == 0])
    auroc = roc_auc_score(y_test, model.score_samples(X_test))
    assert auroc >= 0.90, f"AUROC {auroc:.3f}"
