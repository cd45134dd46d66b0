"""The one-known-type protocol and the label-using baselines of benchmarks/bench_labels_ecg.py (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_labels_ecg import evaluate, jobs, key, load_cache, parse_args, save_cache, settings  # noqa: E402
from labels_protocol import aami_classes, build_detector, one_known_type_split, stratified_sample  # noqa: E402


def beat_table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """AAMI classes and records of 1,200 beats: records r0-r3 train, r4-r5 test, every class in each."""
    rng = np.random.default_rng(seed)
    groups = np.array([f"r{i}" for i in rng.integers(0, 6, 1200)])
    classes = rng.choice(list("NNNNNNSVFQ"), size=1200)
    return classes, groups


@pytest.mark.parametrize("n_labelled", [0, 5, 40])
@pytest.mark.parametrize("seed", [0, 1])
def test_one_known_type_split_never_puts_a_novel_type_or_a_test_record_into_training(n_labelled, seed):
    classes, groups = beat_table(seed)
    train_groups = ["r0", "r1", "r2", "r3"]
    normals, labelled = one_known_type_split(classes, groups, train_groups, "V", 300, n_labelled, seed)
    chosen = np.concatenate([normals, labelled])
    assert set(classes[normals]) == {"N"} and len(normals) == 300
    assert len(labelled) == n_labelled and set(classes[labelled]) <= {"V"}
    assert set(groups[chosen]) <= set(train_groups)
    assert len(set(chosen.tolist())) == len(chosen)


def test_more_labels_add_to_the_fewer_ones_and_the_normals_stay_the_same():
    classes, groups = beat_table()
    normals_5, labelled_5 = one_known_type_split(classes, groups, ["r0", "r1"], "V", 100, 5, seed=3)
    normals_20, labelled_20 = one_known_type_split(classes, groups, ["r0", "r1"], "V", 100, 20, seed=3)
    assert set(labelled_5) < set(labelled_20)
    np.testing.assert_array_equal(normals_5, normals_20)


def test_asking_for_more_labels_than_the_training_records_hold_is_refused():
    classes, groups = beat_table()
    with pytest.raises(ValueError, match="labelled V windows asked for"):
        one_known_type_split(classes, groups, ["r0"], "V", 10, 10_000, seed=0)


def test_stratified_sample_takes_each_group_in_proportion():
    groups = np.array(["a"] * 600 + ["b"] * 300 + ["c"] * 100)
    chosen = stratified_sample(groups, np.arange(1000), 100, np.random.default_rng(0))
    assert [int(np.sum(groups[chosen] == g)) for g in "abc"] == [60, 30, 10]


def test_aami_classes_map_mitbih_symbols_and_refuse_unknown_ones():
    assert aami_classes(np.array(["N", "L", "A", "V", "E", "F", "/"])).tolist() == ["N", "N", "S", "V", "V", "F", "Q"]
    with pytest.raises(ValueError, match="without an AAMI class"):
        aami_classes(np.array(["N", "+"]))


def windows_with_planted_type(n_normal: int, n_planted: int, n_other: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sines [N, 1, 32]; type 1 a narrow spike at a fixed place, type 2 a broad dip elsewhere."""
    rng = np.random.default_rng(seed)
    n = n_normal + n_planted + n_other
    t = np.linspace(0, 2 * np.pi, 32)
    X = np.sin(t + rng.uniform(0, 0.4, (n, 1, 1))) + rng.normal(0, 0.1, (n, 1, 32))
    X[n_normal:n_normal + n_planted, :, 20:23] += 2.5
    X[n_normal + n_planted:, :, 4:12] -= 1.5
    kind = np.r_[np.zeros(n_normal), np.ones(n_planted), np.full(n_other, 2)].astype(np.int8)
    return X.astype(np.float32), kind


@pytest.mark.parametrize("name", ["gradient-boosting", "discriminator-alone", "deep-sad", "plain-autoencoder"])
def test_each_label_using_baseline_ranks_the_planted_type_first(name):
    X_train, kind_train = windows_with_planted_type(400, 20, 0, seed=0)
    X_test, kind_test = windows_with_planted_type(300, 40, 0, seed=1)
    detector = build_detector(name, seed=0, max_steps=150, deep_sad_epochs=30)
    detector.fit(X_train, kind_train)
    scores = detector.score_samples(X_test)
    assert roc_auc_score(kind_test == 1, scores) > 0.95
    assert np.isfinite(detector.threshold_)


def test_evaluate_scores_each_class_against_normal_at_one_percent_fpr_and_at_the_threshold():
    classes = np.array(["N"] * 100 + ["V"] * 10 + ["S"] * 10 + ["F"] * 10)
    scores = np.r_[np.arange(100.0), np.full(10, 200.0), np.full(10, 50.5), np.r_[np.full(5, 150.0), np.zeros(5)]]
    result = evaluate(scores, threshold=49.5, classes=classes)
    assert result["auroc"]["V"] == 1.0
    assert result["recall_at_1pct_fpr"] == {"V": 1.0, "S": 0.0, "F": 0.5}  # above the 99th percentile of N (99)
    assert result["recall_at_threshold"] == {"V": 1.0, "S": 1.0, "F": 0.5}
    assert result["fpr_at_threshold"] == 0.5


def test_the_cache_resumes_only_under_the_same_settings(tmp_path, monkeypatch):
    out = tmp_path / "labels.json"
    monkeypatch.setattr(sys, "argv", ["bench", "--out", str(out), "--labels", "0,5", "--seeds", "0"])
    args = parse_args()
    cache = load_cache(out, settings(args))
    cache["results"][key("agad", 0, 0)] = {"auroc": {"V": 0.9}}
    save_cache(out, cache)
    assert key("agad", 0, 0) in load_cache(out, settings(args))["results"]
    todo = [j for j in jobs(args) if key(*j) not in load_cache(out, settings(args))["results"]]
    assert ("agad", 0, 0) not in todo and ("agad", 5, 0) in todo
    assert ("gradient-boosting", 0, 0) not in todo and ("isolation-forest", 5, 0) not in todo
    args.max_steps += 1
    with pytest.raises(SystemExit, match="written with settings"):
        load_cache(out, settings(args))


def cached_result(detector: str, k: int, seed: int, v_auroc: float) -> dict:
    per_class = {"V": v_auroc, "S": 0.5, "F": 0.75}
    return {"detector": detector, "n_labelled": k, "seed": seed, "auroc": per_class, "recall_at_1pct_fpr": per_class,
            "recall_at_threshold": per_class, "fpr_at_threshold": 0.01}


def test_the_report_renders_mean_and_std_over_seeds_from_the_cache_into_the_marked_block(tmp_path, monkeypatch):
    import labels_report

    results = {key("agad", k, s): cached_result("agad", k, s, 0.9 + 0.02 * s) for k in (0, 20) for s in (0, 1, 2)}
    results[key("deep-sad", 20, 0)] = cached_result("deep-sad", 20, 0, 0.8)
    cache = tmp_path / "labels_ecg.json"
    cache.write_text(__import__("json").dumps({"settings": {"normal_beats": 2000, "max_steps": 300, "deep_sad_epochs": 50,
                                                            "fs": 180.0, "window_s": 0.8, "lead": "MLII"},
                                               "results": results}))
    doc = tmp_path / "docs" / "with-labels.md"
    doc.parent.mkdir()
    doc.write_text(f"# With labels\nbefore\n{labels_report.BEGIN}\nstale\n{labels_report.END}\nafter\n")
    monkeypatch.setattr(sys, "argv", ["labels_report", str(cache), "--update", str(doc)])
    labels_report.main()
    text = doc.read_text()
    assert "stale" not in text and text.startswith("# With labels\nbefore\n") and text.endswith("after\n")
    assert "| agad | 20 (0.01) | 0.920 ± 0.016 |" in text  # V AUROC 0.90, 0.92, 0.94 over three seeds
    assert "0.800 (n=1)" in text
    assert "](../labels_ecg_efficiency.png)" in text and (tmp_path / "labels_ecg_efficiency.png").stat().st_size > 0


def test_the_selection_table_sets_runs_of_different_agad_settings_side_by_side():
    import labels_report

    defaults = {"settings": {}, "results": {key("agad-no-adcon", 5, s): cached_result("agad-no-adcon", 5, s, 0.9)
                                            for s in (0, 1, 2)}}
    margin = {"settings": {"agad": {"anomaly_loss": "relative-margin", "anomaly_margin": 10}},
              "results": {key("agad-no-adcon", 5, 0): cached_result("agad-no-adcon", 5, 0, 0.96)}}
    text = labels_report.selection_table([defaults, margin], ["agad-no-adcon"])
    rows = text.splitlines()[2:]
    assert rows[0] == "| defaults | agad-no-adcon | 0.900 / 0.900 / 0.500 / 0.750 |"
    assert rows[1].startswith('| `{"anomaly_loss": "relative-margin", "anomaly_margin": 10}` | agad-no-adcon | 0.960 /')
    assert rows[1].endswith("(n=1) |")


# --------------------------------------------------------------------------- images (bench_labels_images.py)
FASHION_SLICE = Path(__file__).parent / "data" / "fashion-mnist"


def test_the_image_benchmark_runs_every_protocol_end_to_end_and_resumes(tmp_path, capsys):
    import json

    import bench_labels_images as images

    out = tmp_path / "labels_images.json"
    argv = ["--data", str(FASHION_SLICE), "--out", str(out), "--classes", "1", "--seeds", "0,1",
            "--normal-images", "30", "--test-per-class", "10", "--gammas", "0,0.1", "--figure-gammas", "0.1,0.2",
            "--label-counts", "2,5", "--max-steps", "2", "--detectors", "agad,gradient-boosting,pca"]
    images.main(argv)
    cache = json.loads(out.read_text())
    assert cache["classes"] == [1] and cache["seeds"] == [0, 1]
    assert cache["settings"]["max_steps"] == 2 and cache["settings"]["normal_images"] == 30
    results = cache["results"]
    per_seed = {images.key(d, kind, k, 1, 0) for d, kind, k in [
        ("agad", "none", 0), ("pca", "none", 0), ("agad-no-advprop", "none", 0),  # Freeze-BN variants: AGAD's own
        *[(d, kind, 3) for kind in ("seen", "known") for d in ("agad", "gradient-boosting", *list(images.TABLE5)[1:])],
        ("agad", "seen", 8),  # Figure 4 at γ = .2
        *[(d, "known", k) for d in ("agad", "gradient-boosting") for k in (2, 5)]]}
    assert {k for k in results if k.endswith("|0")} == per_seed
    assert len(results) == 2 * len(per_seed)
    for r in results.values():
        assert 0 <= r["figures"]["all"]["auroc"] <= 1 and set(r["boxes"]) == {str(c) for c in range(10)}
        assert r["n_normal"] == 30 and sum(r["training_classes"].values()) == 30 + r["n_labelled"]
        if r["kind"] == "known":  # the one-known-type split: the normal class and the known one, never a novel type
            assert r["known_class"] == (1 + 1 + r["seed"]) % 10
            assert set(r["training_classes"]) == {"1", str(r["known_class"])}
            assert r["training_classes"][str(r["known_class"])] == r["n_labelled"]
            assert {"known", "novel"} <= set(r["figures"])
        elif r["kind"] == "seen":
            assert len(set(r["training_classes"]) - {"1"}) > 1  # labels from several anomalous classes
    assert results[images.key("agad", "known", 3, 1, 0)]["known_class"] != results[images.key("agad", "known", 3, 1, 1)]["known_class"]
    assert (tmp_path / "labels_images_efficiency.png").stat().st_size > 0
    assert (tmp_path / "labels_images_figure4.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "Table 5 (AdvProp x Freeze-BN)" in printed and "One known type (protocol 2)" in printed
    images.main(argv)  # resumed: nothing runs again
    assert json.loads(out.read_text())["results"] == results
    assert "every run is in" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="written with settings"):
        images.main([*argv[:-4], "--max-steps", "3", *argv[-2:]])


def test_an_image_report_cell_says_when_it_averages_fewer_classes_than_the_report():
    import bench_labels_images as images

    runs = [{"seed": s, "figures": {"all": {"auroc": 0.9}}} for s in (0, 1, 2)]
    assert images.cell(runs, "all", "auroc", n_classes_run=1) == "0.900 ± 0.000"
    assert images.cell(runs, "all", "auroc", n_classes_run=2) == "0.900 ± 0.000 (seeds 3, classes 1)"


# --------------------------------------------------------------------------- audio (bench_labels_audio.py)
FSDD_SLICE = Path(__file__).parent / "data" / "fsdd"


def test_the_audio_benchmark_keeps_test_speakers_and_novel_digits_out_of_training(tmp_path):
    """Real FSDD clips (digits 0-2, three speakers): one known digit, speaker-disjoint, clip scores."""
    import json

    import bench_labels_audio as audio

    out = tmp_path / "labels_audio.json"
    argv = ["--data", str(FSDD_SLICE), "--out", str(out), "--classes", "0", "--seeds", "0,1", "--normal-windows", "4",
            "--gammas", "0,0.34", "--protocols", "known", "--max-steps", "2", "--detectors", "agad,gradient-boosting"]
    audio.main(argv)
    cache = json.loads(out.read_text())
    assert cache["settings"]["data"] == "FSDD" and cache["settings"]["split"] == "test"
    data = audio.load_clips(audio.parse_args(argv))
    assert len(data["classes_test"]) == 6  # the test speaker's six clips, one score each
    assert data["item_of_test_window"].max() + 1 == len(data["classes_test"])
    labelled = [r for r in cache["results"].values() if r["n_labelled"]]
    assert {r["detector"] for r in labelled} == {"agad", "gradient-boosting"} and len(labelled) == 4
    for r in labelled:
        known = (0 + 1 + r["seed"]) % 10
        assert r["known_class"] == known
        assert r["training_classes"] == {"0": 4, str(known): 2}  # never the novel digit
        assert {"known", "novel"} <= set(r["figures"]) and 0 <= r["figures"]["novel"]["auroc"] <= 1
    assert not (tmp_path / "labels_audio_efficiency.png").exists()  # one label count draws no curve
