"""ECG modality on real MIT-BIH slices (tests/data, see PROVENANCE.md there)."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import wfdb

from modalities import get_modality, load_modality, split_by_group
from modalities.ecg import BEAT_SYMBOLS, ECGModality, detect_r_peaks, match_beats

DATA = Path(__file__).parent / "data"
REC_208 = DATA / "mitdb" / "208"
REC_119 = DATA / "mitdb-pvc" / "119"


def reference_beats(base: Path, ext: str, pre: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Beat samples and symbols whose window fits into the record, read straight with wfdb."""
    ann = wfdb.rdann(str(base), ext)
    total = wfdb.rdheader(str(base)).sig_len
    samples, symbols = np.asarray(ann.sample), np.asarray(ann.symbol)
    keep = np.isin(symbols, list(BEAT_SYMBOLS)) & (samples - pre >= 0) & (samples - pre + length <= total)
    return samples[keep], symbols[keep]


def test_beat_windows_and_aami_labels_match_annotations():
    ecg = ECGModality()
    w = ecg.load(REC_208)
    samples, symbols = reference_beats(REC_208, "atr", ecg.pre_samples, ecg.window_len)
    expected = Counter(symbols)
    assert set(expected) == {"N", "V", "F"} and expected["V"] > 100 and expected["F"] > 30
    assert Counter(w.info["symbol"].tolist()) == expected
    assert w.X.shape == (len(samples), 2, 288) and w.X.dtype == np.float32
    assert int(w.y.sum()) == expected["V"] + expected["F"]
    assert np.array_equal(w.y, np.isin(w.info["symbol"], ["V", "F"]).astype(np.int8))
    np.testing.assert_array_equal(w.position + ecg.pre_samples, samples)
    signal = wfdb.rdrecord(str(REC_208)).p_signal
    np.testing.assert_allclose(w.X[:, :, ecg.pre_samples], signal[samples], rtol=1e-6)
    assert set(w.source) == {"208"} and set(w.group) == {"208"}


def test_anomaly_symbols_drop_or_keep_other_beats():
    only_v = ECGModality(anomaly_symbols="V").load(REC_208)
    assert set(only_v.info["symbol"]) == {"N", "V"}
    assert int(only_v.y.sum()) == int((only_v.info["symbol"] == "V").sum())
    kept = ECGModality(anomaly_symbols="V", other="normal").load(REC_208)
    assert set(kept.info["symbol"]) == {"N", "V", "F"}
    assert (kept.y[kept.info["symbol"] == "F"] == 0).all()


def test_pvc_extension_defaults_v_anomalous_q_normal():
    ecg = ECGModality(ann="pvc")
    w = ecg.load(REC_119)
    _, symbols = reference_beats(REC_119, "pvc", ecg.pre_samples, ecg.window_len)
    assert w.X.shape[1] == 1
    assert len(w) == len(symbols)
    assert int(w.y.sum()) == int((symbols == "V").sum()) > 30
    assert (w.y[w.info["symbol"] == "Q"] == 0).all()
    assert ecg.symbol_sets() == ("Q", "V")
    assert ECGModality().symbol_sets()[0] == "NLRej"


def test_resampling_keeps_beats_aligned_and_window_length_follows_fs():
    native = ECGModality(leads=["MLII"]).load(REC_208)
    ecg250 = ECGModality(fs=250, leads=["MLII"])
    w = ecg250.load(REC_208)
    assert w.X.shape[2] == ecg250.window_len == 200
    samples, _ = reference_beats(REC_208, "atr", 115, 288)
    common = np.isin(np.round(samples * 250 / 360).astype(int) - ecg250.pre_samples, w.position)
    assert common.sum() >= len(samples) - 2
    # the QRS extremum sits at the same time in both windows (within 2 samples at 250 Hz)
    t_native = np.abs(native.X[common, 0] - np.median(native.X[common, 0], axis=1, keepdims=True)).argmax(1) - 115
    keep = np.isin(w.position, np.round(samples[common] * 250 / 360).astype(int) - ecg250.pre_samples)
    t_250 = np.abs(w.X[keep, 0] - np.median(w.X[keep, 0], axis=1, keepdims=True)).argmax(1) - ecg250.pre_samples
    assert np.median(np.abs(t_native / 360 * 250 - t_250)) <= 1.0
    assert np.mean(np.abs(t_native / 360 * 250 - t_250) <= 2.0) > 0.95


def test_r_peak_detector_against_reference():
    record = wfdb.rdrecord(str(REC_208), channels=[0])
    samples, _ = reference_beats(REC_208, "atr", 0, 1)
    detected = detect_r_peaks(record.p_signal[:, 0], record.fs)
    tp, fp, fn = match_beats(detected, samples, tolerance=int(0.05 * record.fs))
    assert tp / (tp + fn) >= 0.95 and tp / (tp + fp) >= 0.95


def test_unannotated_records_use_the_detector(tmp_path):
    for suffix in (".hea", ".dat"):
        shutil.copy(REC_208.with_suffix(suffix), tmp_path / f"208{suffix}")
    with pytest.warns(UserWarning, match="208.atr not found"):
        w = ECGModality().load(tmp_path / "208")
    assert w.y is None and "symbol" not in w.info
    assert abs(len(w) - len(ECGModality().load(REC_208))) <= 10
    assert len(ECGModality(ann=None).load(REC_208)) == len(w)
    # a raw signal (e.g. a stream buffer) is cut exactly like an unannotated record
    X, starts = ECGModality().cut(wfdb.rdrecord(str(REC_208)).p_signal)
    np.testing.assert_array_equal(X, w.X)
    np.testing.assert_array_equal(starts, w.position)


def test_sliding_windows_label_central_anomalous_beats():
    ecg = ECGModality(mode="sliding")
    w = ecg.load(REC_208)
    stride, length = 144, 288
    assert len(w) == (64800 - length) // stride + 1
    np.testing.assert_array_equal(w.position, np.arange(len(w)) * stride)
    ann = wfdb.rdann(str(REC_208), "atr")
    anomalous = np.asarray(ann.sample)[np.isin(ann.symbol, ["V", "F"])]
    starts = w.position[:, None]
    expected = ((anomalous >= starts + length // 4) & (anomalous < starts + 3 * length // 4)).any(axis=1)
    np.testing.assert_array_equal(w.y, expected)
    # half-window stride: every anomalous beat (away from the ends) is central in some window
    inner = anomalous[(anomalous >= length // 4) & (anomalous < w.position[-1] + 3 * length // 4)]
    assert all(((a >= w.position + 72) & (a < w.position + 216) & (w.y == 1)).any() for a in inner)


def test_sliding_without_annotations_is_unlabelled():
    w = ECGModality(mode="sliding", stride_s=0.8, ann=None).load(REC_119)
    assert w.y is None and len(w) == 64800 // 288


def test_directory_records_option_and_record_paths():
    by_dir = ECGModality().load(DATA / "mitdb", records=["208"])
    by_ext = ECGModality().load(DATA / "mitdb" / "208.dat")
    assert np.array_equal(by_dir.X, by_ext.X) and len(by_dir) == len(ECGModality().load(DATA / "mitdb"))


def test_record_wise_split_has_no_leakage(tmp_path):
    for base in (REC_208, REC_119):
        for suffix in (".hea", ".dat"):
            shutil.copy(base.with_suffix(suffix), tmp_path / f"{base.name}{suffix}")
    ecg = ECGModality(leads=["MLII"], ann=None)
    w = ecg.load(tmp_path)
    assert set(w.group) == {"208", "119"}
    train, test = split_by_group(w, test_groups=["119"])
    assert set(train.group) == {"208"} and set(test.group) == {"119"}
    assert len(train) + len(test) == len(w)
    train, test = split_by_group(w, test_fraction=0.5, random_state=1)
    assert not set(train.group) & set(test.group) and len(train) and len(test)


def test_prepare_removes_window_median_and_checks_shape():
    ecg = ECGModality()
    w = ecg.load(REC_208)
    x = ecg.prepare(w.X[:5])
    assert x.shape == (5, 2, 288) and x.dtype == np.float32
    np.testing.assert_allclose(np.median(x, axis=-1), 0.0, atol=1e-6)
    np.testing.assert_allclose(ecg.prepare(w.X[0]), x[:1])
    with pytest.raises(ValueError, match="does not match"):
        ecg.prepare(np.zeros((2, 3, 288)))
    with pytest.raises(ValueError, match="does not match"):
        ecg.prepare(np.zeros((2, 2, 200)))


def test_settings_round_trip_through_json():
    ecg = get_modality("ecg", ann="pvc", leads=["MLII"], window_s=1.0)
    w = ecg.load(REC_119)
    restored = load_modality(json.loads(json.dumps(ecg.to_dict())))
    assert isinstance(restored, ECGModality) and restored.get_params() == ecg.get_params()
    assert restored.raw_shape == (1, 360)
    np.testing.assert_array_equal(restored.prepare(w.X[:3]), ecg.prepare(w.X[:3]))
    all_leads = ECGModality()
    all_leads.load(REC_208)
    assert load_modality(json.loads(json.dumps(all_leads.to_dict()))).raw_shape == (2, 288)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_record"):
        ECGModality().load(DATA / "mitdb" / "no_such_record")
    with pytest.raises(FileNotFoundError, match="999"):
        ECGModality().load(DATA / "mitdb", records=["999"])
    with pytest.raises(ValueError, match=r"208\.xyz"):
        ECGModality(ann="xyz").load(REC_208)
    with pytest.raises(ValueError, match="no WFDB records"):
        ECGModality().load(tmp_path)
    with pytest.raises(ValueError, match="V9"):
        ECGModality(leads=["V9"]).load(REC_208)
    with pytest.raises(ValueError, match="both normal and anomalous"):
        ECGModality(normal_symbols="NV", anomaly_symbols="V").load(REC_208)
