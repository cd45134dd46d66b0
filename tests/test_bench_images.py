"""The image benchmark end to end on a real Fashion-MNIST slice (tests/data/fashion-mnist)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipelines.offline.baselines import parse_agad_settings
from pipelines.offline.bench_images import draw_labelled_anomalies, validation_split
from pipelines.cli import main

SLICE = Path(__file__).parent / "data" / "fashion-mnist"


def test_labelled_anomalies_match_the_supervision_level():
    classes = np.repeat(np.arange(10), 100)
    rng = np.random.default_rng(0)
    picked = draw_labelled_anomalies(classes, 3, n_normal=95, gamma=0.05, rng=rng)
    assert len(picked) == 5 and len(picked) / (95 + len(picked)) == 0.05
    assert not np.any(classes[picked] == 3)
    assert len(draw_labelled_anomalies(classes, 3, 95, 0.0, rng)) == 0


def test_bench_images_writes_every_run_and_the_paper_table(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main(["bench-images", "--data-dir", str(SLICE), "--classes", "1,7", "--gammas", "0,0.1",
                 "--max-steps", "5", "--batch-size", "16", "--channels", "8,16,32",
                 "--methods", "AGAD,agad-no-adcon,pca,isolation-forest,ecod", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    runs = result["runs"]
    agad_runs = {(r["method"], r["gamma"], r["class"]) for r in runs if r["method"] in ("AGAD", "agad-no-adcon")}
    assert agad_runs == {(m, g, c) for m in ("AGAD", "agad-no-adcon") for g in (0, 0.1) for c in (1, 7)}
    unsupervised = [(r["method"], r["gamma"]) for r in runs if r["method"] in ("pca", "isolation-forest", "ecod")]
    assert sorted(unsupervised) == sorted([(m, 0.0) for m in ("pca", "isolation-forest", "ecod") for _ in (1, 7)])
    supervised = [r for r in runs if r["gamma"] == 0.1 and r["method"] == "AGAD"]
    assert all(r["n_labelled_anomalies"] == round(0.1 * r["n_normal"] / 0.9) for r in supervised)
    pca_trouser = next(r for r in runs if r["method"] == "pca" and r["class"] == 1)
    assert pca_trouser["auroc"] > 0.8, "PCA should spot non-trousers on real images"
    assert all(0.0 <= r["auroc"] <= 1.0 for r in runs)
    assert "| AGAD | 0.1 |" in capsys.readouterr().out
    assert "mean ± std" in result["table_markdown"]


def test_resume_skips_finished_runs(tmp_path):
    out = tmp_path / "results.json"
    args = ["bench-images", "--data-dir", str(SLICE), "--classes", "1", "--methods", "pca", "--out", str(out)]
    main(args)
    first = json.loads(out.read_text())["runs"]
    main([*args, "--resume"])
    assert json.loads(out.read_text())["runs"] == first


def test_validation_split_holds_out_a_sixth_of_every_class():
    classes = np.repeat(np.arange(3), [60, 120, 30])
    kept, held_out = validation_split(classes, seed=0)
    assert len(np.intersect1d(kept, held_out)) == 0 and len(kept) + len(held_out) == len(classes)
    assert [int(np.sum(classes[held_out] == c)) for c in range(3)] == [10, 20, 5]
    assert not np.array_equal(held_out, validation_split(classes, seed=1)[1])


def test_validation_mode_never_reads_the_test_set_and_passes_agad_settings(tmp_path):
    train_only = tmp_path / "train-only"
    train_only.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(SLICE / name, train_only / name)
    out = tmp_path / "validation.json"
    code = main(["bench-images", "--data-dir", str(train_only), "--validation", "--classes", "1", "--gammas", "0.1",
                 "--methods", "AGAD", "--channels", "8,16,32", "--batch-size", "16", "--max-steps", "50",
                 "--agad", "max_steps=3", "--agad", "anomaly_loss=margin", "--out", str(out)])
    assert code == 0
    (run,) = json.loads(out.read_text())["runs"]
    assert 0.0 <= run["auroc"] <= 1.0 and run["n_steps"] == 3, "--agad max_steps=3 overrides --max-steps 50"
    assert run["n_normal"] == 40 - round(40 / 6), "the held-out sixth of the 40 trousers must not be trained on"
    assert json.loads(out.read_text())["config"]["agad"] == ["max_steps=3", "anomaly_loss=margin"]


def test_agad_settings_parse_as_json_or_text_and_name_bad_input():
    assert parse_agad_settings(["adcon_margin=0.1", "channels=[8,16]", "adcon=hinge"]) == {
        "adcon_margin": 0.1, "channels": [8, 16], "adcon": "hinge"}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        parse_agad_settings(["adcon_margin"])
