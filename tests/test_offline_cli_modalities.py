"""Each built-in modality through the exact commands a user types: train with `--normal` (the
option `train --help` documents for every one of them; issue 25 found it refused for all),
then evaluate and score-file, on the real test slices in tests/data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from modalities import get_modality
from pipelines.cli import main

DATA = Path(__file__).parent / "data"
BUNDLED_ECG = Path(__file__).parents[1] / "data" / "mitdb-mlii-pvc"
TINY = ["--epochs", "1", "--channels", "8,16,32", "--latent-dim", "16", "--batch-size", "32", "--seed", "0",
        "--device", "cpu", "--quiet"]


def ucr_files(folder: Path) -> tuple[Path, Path]:
    """A UCR-format pair (label, then the values, tab-separated) of real MIT-BIH beats of record 119:
    class 1 normal beats, class 2 PVCs, the first 60% of the record for training."""
    beats = get_modality("ecg", ann="pvc", fs=90).load(DATA / "mitdb-pvc" / "119")
    rows = np.column_stack([1 + beats.y, beats.X[:, 0]])
    cut = int(0.6 * len(rows))
    paths = folder / "BEATS_TRAIN.tsv", folder / "BEATS_TEST.tsv"
    for path, part in zip(paths, (rows[:cut], rows[cut:])):
        np.savetxt(path, part, delimiter="\t", fmt="%.6g")
    return paths


def get_modality_settings(model: Path) -> dict:
    return json.loads((model / "modality.json").read_text())["params"]


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("modality", ["ecg", "audio", "image", "array"])
def test_train_evaluate_and_score_file_with_normal_for_every_built_in_modality(modality, tmp_path):
    model, report = tmp_path / "model", tmp_path / "report"
    if modality == "ecg":  # --ann pvc marks PVCs 'V' and every other beat 'Q'; the records that ship in data/
        train = ["--data", str(BUNDLED_ECG), "--ann", "pvc", "--normal", "Q", "--anomalous", "V", "--records", "105,119",
                 "--test-records", "119", "--fs", "180", "--max-train-windows", "300"]
        evaluate_on, score_on = [], ["--data", str(BUNDLED_ECG / "119"), "--ann", "pvc"]
    elif modality == "audio":
        train = ["--preset", "fsdd", "--data", str(DATA / "fsdd"), "--normal", "0", "--test-groups", "theo"]
        evaluate_on, score_on = [], ["--data", str(DATA / "fsdd" / "0_theo_0.wav")]
    elif modality == "image":
        train = ["--data", str(DATA / "fashion-mnist"), "--normal", "0"]
        evaluate_on, score_on = [], ["--data", str(DATA / "fashion-mnist"), "--split", "test"]
    else:
        train_file, test_file = ucr_files(tmp_path)
        train = ["--data", str(train_file), "--normal", "1"]
        evaluate_on, score_on = ["--data", str(test_file)], ["--data", str(test_file)]

    assert main(["train", "--modality", modality, *train, "--out", str(model), *TINY]) == 0
    training = json.loads((model / "training.json").read_text())
    assert training["n_normal"] > 0 and training["n_labelled_anomalies"] == 0
    if modality == "ecg":
        # only 'Q' beats trained the model: the record's PVCs are anomalies, not training windows
        assert get_modality_settings(model)["normal_symbols"] == "Q"
    if modality == "array":
        # its defaults, chosen on UCR validation folds (docs/modalities.md): AGAD without the
        # pseudo-anomaly term, still with L_adv and L_lat, so not its own plain autoencoder
        params = json.loads((model / "agad.json").read_text())["params"]
        assert params["lambda_adcon"] == 0.0 and params["aux_bn"] is False
        assert params["lambda_adv"] > 0 and params["lambda_lat"] > 0

    assert main(["evaluate", "--model", str(model), *evaluate_on, "--out", str(report), "--no-baselines",
                 "--device", "cpu", "--quiet"]) == 0
    counts = json.loads((report / "report.json").read_text())["levels"]["window"]["counts"]
    assert counts["n_normal"] > 0 and counts["n_anomalous"] > 0  # --normal split the classes

    out = tmp_path / "scores.csv"
    assert main(["score-file", "--model", str(model), *score_on, "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    rows = read_rows(out)
    assert rows and all(float(r["score"]) >= 0 for r in rows)
    if modality != "audio":  # a clip of one digit: its windows share one label
        assert {r["label"] for r in rows} == {"0", "1"}


def test_normal_is_refused_for_a_plug_in_modality_that_does_not_take_it():
    """The message the regression printed for every modality is still right where it applies."""
    from pipelines.cli import build_parser
    from pipelines.offline.command import modality_settings

    args = build_parser(["train"]).parse_args(["train", "--modality", "array", "--data", "d", "--out", "m",
                                               "--normal", "1"])
    assert modality_settings("array", args) == {"normal_label": "1"}
    with pytest.raises(ValueError, match="--normal: not an option of the accel modality"):
        modality_settings("accel", args)
