"""CLI train -> evaluate -> score-file round trips on tiny budgets, and clean errors for bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import wfdb

from agad_stream import AGAD

from pipelines.offline.baselines import BASELINE_NAMES
from pipelines.cli import main

DATA = Path(__file__).parent / "data"
TINY = ["--epochs", "1", "--channels", "8,16,32", "--latent-dim", "16", "--batch-size", "32", "--seed", "0",
        "--device", "cpu", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PLOTS = ("roc.png", "score_histogram.png", "explanations.png")


@pytest.fixture(scope="module")
def ecg_dir(tmp_path_factory) -> Path:
    """Record 119 (3 min, `pvc` annotations) cut into two records, 119a and 119b, so a
    record-wise train/test split exists within the real test slice."""
    out = tmp_path_factory.mktemp("ecg")
    source = str(DATA / "mitdb-pvc" / "119")
    record = wfdb.rdrecord(source, physical=False)
    ann = wfdb.rdann(source, "pvc")
    half = len(record.d_signal) // 2
    for name, lo, hi in (("119a", 0, half), ("119b", half, len(record.d_signal))):
        wfdb.wrsamp(name, fs=record.fs, units=record.units, sig_name=record.sig_name,
                    d_signal=record.d_signal[lo:hi], fmt=record.fmt, adc_gain=record.adc_gain,
                    baseline=record.baseline, write_dir=str(out))
        inside = (ann.sample >= lo) & (ann.sample < hi)
        wfdb.wrann(name, "pvc", np.asarray(ann.sample)[inside] - lo, symbol=list(np.asarray(ann.symbol)[inside]),
                   fs=record.fs, write_dir=str(out))
    return out


@pytest.fixture(scope="module")
def ecg_model(ecg_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "ecg"
    assert main(["train", "--modality", "ecg", "--data", str(ecg_dir), "--ann", "pvc",
                 "--test-records", "119b", "--out", str(out), *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def machine_dir(tmp_path_factory) -> Path:
    from modalities.synthetic_audio import make_machine_sounds

    return make_machine_sounds(tmp_path_factory.mktemp("machine"), n_train=4, n_test_normal=2,
                               n_test_anomaly=3, seconds=1.5, seed=2)


def read_report(report_dir: Path) -> dict:
    return json.loads((report_dir / "report.json").read_text())


def assert_plots(report_dir: Path) -> None:
    for name in PLOTS:
        assert (report_dir / name).read_bytes()[:8] == PNG_MAGIC, name


def test_ecg_model_dir_records_the_training_split(ecg_model):
    assert {"weights.pt", "agad.json", "modality.json", "training.json"} <= {p.name for p in ecg_model.iterdir()}
    training = json.loads((ecg_model / "training.json").read_text())
    assert training["train_groups"] == ["119a"] and training["test_groups"] == ["119b"]
    assert training["n_normal"] > 0 and training["n_labelled_anomalies"] == 0


def test_each_modality_trains_with_its_own_agad_defaults(ecg_model, machine_dir, tmp_path):
    """ECG's defaults (chosen on held-out MIT-BIH patients) drop the pseudo-anomaly term;
    a modality without its own keeps AGAD's, so the paper's configuration stays the default."""
    ecg = json.loads((ecg_model / "agad.json").read_text())["params"]
    assert ecg["lambda_adcon"] == 0.0 and ecg["aux_bn"] is False
    assert main(["train", "--modality", "audio", "--data", str(machine_dir), "--out", str(tmp_path / "m"), *TINY]) == 0
    audio = json.loads((tmp_path / "m" / "agad.json").read_text())["params"]
    assert audio["lambda_adcon"] == AGAD().lambda_adcon > 0 and audio["aux_bn"] is True


def test_ecg_evaluate_reports_agad_and_baselines_on_unseen_record(ecg_model, tmp_path):
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(ecg_model), "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    report = read_report(out)
    assert report["test_groups"] == ["119b"]
    window = report["levels"]["window"]
    assert window["counts"]["n_anomalous"] > 0 and window["counts"]["n_normal"] > 0
    assert set(window["results"]) == {"AGAD", *BASELINE_NAMES}
    for metrics in window["results"].values():
        assert 0.0 <= metrics["auroc"] <= 1.0 and 0.0 <= metrics["auprc"] <= 1.0
        assert {"precision", "recall", "f1", "threshold"} <= set(metrics)
    assert "score AGAD" in report["timings"] and "fit plain-autoencoder" in report["timings"]
    assert "plain-autoencoder" in (out / "report.md").read_text()
    assert_plots(out)


def test_score_file_writes_one_row_per_beat(ecg_model, ecg_dir, tmp_path):
    out = tmp_path / "scores.csv"
    assert main(["score-file", "--model", str(ecg_model), "--data", str(ecg_dir / "119b"),
                 "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    symbols = wfdb.rdann(str(ecg_dir / "119b"), "pvc").symbol
    assert 0 < len(rows) <= len(symbols)
    assert set(rows[0]) == {"source", "position", "score", "label", "flagged"}
    assert {r["source"] for r in rows} == {"119b"}
    assert {r["label"] for r in rows} == {"0", "1"} and {r["flagged"] for r in rows} <= {"0", "1"}
    positions = [int(r["position"]) for r in rows]
    assert positions == sorted(positions)


def test_supervised_mode_draws_gamma_share_of_labelled_anomalies(ecg_dir, tmp_path):
    out = tmp_path / "model"
    assert main(["train", "--modality", "ecg", "--data", str(ecg_dir), "--ann", "pvc", "--train-records", "119a",
                 "--gamma", "0.1", "--max-train-windows", "45", "--out", str(out), *TINY]) == 0
    training = json.loads((out / "training.json").read_text())
    assert (training["n_normal"], training["n_labelled_anomalies"]) == (45, 5)


def test_train_runs_a_small_model_on_one_thread_unless_told_otherwise(ecg_dir, tmp_path, capsys):
    """torch starts with a thread per core, many times slower for a model this small on a busy machine."""
    threads = torch.get_num_threads()
    train = ["train", "--modality", "ecg", "--data", str(ecg_dir), "--ann", "pvc", "--train-records", "119a",
             "--max-train-windows", "45", *TINY]
    try:
        torch.set_num_threads(2)
        for extra, expected in (([], 1), (["--torch-threads", "2"], 2)):
            out = tmp_path / f"model-{expected}"
            assert main([*train, "--out", str(out), *extra]) == 0
            assert json.loads((out / "training.json").read_text())["torch_threads"] == expected
        assert "--torch-threads must be >= 0, got -1" in run_error([*train, "--out", str(tmp_path / "m"),
                                                                    "--torch-threads", "-1"], capsys)
    finally:
        torch.set_num_threads(threads)


def test_audio_round_trip_reports_clip_level(machine_dir, tmp_path):
    model, report_dir = tmp_path / "model", tmp_path / "report"
    assert main(["train", "--modality", "audio", "--data", str(machine_dir), "--out", str(model), *TINY]) == 0
    training = json.loads((model / "training.json").read_text())
    assert training["load_options"] == {"split": "train"}
    assert main(["evaluate", "--model", str(model), "--out", str(report_dir), "--aggregate", "max",
                 "--device", "cpu", "--quiet"]) == 0
    report = read_report(report_dir)
    clip = report["levels"]["clip"]
    assert clip["counts"] == {"n": 5, "n_normal": 2, "n_anomalous": 3}
    assert set(clip["results"]) == {"AGAD", *BASELINE_NAMES}
    assert_plots(report_dir)


def run_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_missing_record_is_a_clean_error(ecg_dir, tmp_path, capsys):
    err = run_error(["train", "--modality", "ecg", "--data", str(ecg_dir / "999"), "--ann", "pvc",
                     "--out", str(tmp_path / "m"), *TINY], capsys)
    assert "999" in err and "not found" in err


def test_unknown_test_record_is_a_clean_error(ecg_dir, tmp_path, capsys):
    err = run_error(["train", "--modality", "ecg", "--data", str(ecg_dir), "--ann", "pvc",
                     "--test-records", "119c", "--out", str(tmp_path / "m"), *TINY], capsys)
    assert "119c" in err


def test_unknown_annotation_extension_is_a_clean_error(ecg_dir, tmp_path, capsys):
    err = run_error(["train", "--modality", "ecg", "--data", str(ecg_dir), "--ann", "xyz",
                     "--out", str(tmp_path / "m"), *TINY], capsys)
    assert "xyz" in err


@pytest.mark.parametrize("modality", ["ecg", "audio"])
def test_empty_directory_is_a_clean_error(modality, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = run_error(["train", "--modality", modality, "--data", str(empty), "--out", str(tmp_path / "m"), *TINY], capsys)
    assert str(empty) in err and "no " in err


def test_corrupt_wav_is_a_clean_error(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "normal_000.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    err = run_error(["train", "--modality", "audio", "--data", str(clips), "--out", str(tmp_path / "m"), *TINY], capsys)
    assert "normal_000.wav" in err


def test_evaluate_refuses_data_that_was_all_used_for_training(ecg_model, ecg_dir, tmp_path, capsys):
    err = run_error(["evaluate", "--model", str(ecg_model), "--data", str(ecg_dir / "119a"),
                     "--out", str(tmp_path / "r"), "--quiet"], capsys)
    assert "used in training" in err


def test_options_that_would_change_the_model_inputs_are_refused(ecg_model, tmp_path, capsys):
    err = run_error(["evaluate", "--model", str(ecg_model), "--fs", "250", "--out", str(tmp_path / "r")], capsys)
    assert "--fs" in err and "retrain" in err
    err = run_error(["evaluate", "--model", str(ecg_model), "--sample-rate", "8000", "--out", str(tmp_path / "r")], capsys)
    assert "not an option of the ecg modality" in err


def test_publish_adds_a_checked_model_to_the_registry(ecg_model, tmp_path, capsys):
    from agad_stream import ModelRegistry

    registry = ModelRegistry(tmp_path / "reg")
    assert main(["publish", "--model", str(tmp_path / "missing"), "--registry", str(registry.root)]) == 2
    assert "modality.json" in capsys.readouterr().err
    assert registry.versions() == []
    assert main(["publish", "--model", str(ecg_model), "--registry", str(registry.root)]) == 0
    assert main(["publish", "--model", str(ecg_model), "--registry", str(registry.root), "--no-switch"]) == 0
    assert registry.versions() == [1, 2] and registry.current_version() == 1
    assert (registry.current_path() / "modality.json").is_file()
