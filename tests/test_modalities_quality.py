"""Signal-quality checks on real record slices with synthetic faults spliced in (issue 10, defect 5):
a flat line, clipping or an implausible amplitude must be caught on the raw window, because
the model would score it as normal (ECG `prepare` turns any flat line into all zeros)."""

import numpy as np
import pytest

from modalities import get_modality, load_modality

ECG_119 = "tests/data/mitdb-pvc/119"
ECG_208 = "tests/data/mitdb/208"
FSDD = "tests/data/fsdd"


def spliced_windows(modality, record, start_s, length_s, fault):
    """Raw windows cut (as a live stream would be) from `record` with `fault` applied to
    [start_s, start_s + length_s), and masks of the windows wholly inside and wholly outside it."""
    signal, _, _ = modality.read_record(record)
    lo, hi = int(start_s * modality.fs), int((start_s + length_s) * modality.fs)
    signal[lo:hi] = fault(signal[lo:hi])
    windows, starts = modality.cut(signal)
    inside = (starts >= lo) & (starts + modality.window_len <= hi)
    outside = (starts + modality.window_len <= lo) | (starts >= hi)
    return windows, inside, outside


def issues(modality, windows):
    return np.asarray(modality.quality_issues(windows), dtype=object)


@pytest.mark.parametrize("level", [0.0, -0.96, 1e20])
def test_ecg_flat_line_of_any_level_is_caught(level):
    ecg = get_modality("ecg", ann=None, mode="sliding")
    windows, inside, outside = spliced_windows(ecg, ECG_119, 30, 10, lambda seg: np.full_like(seg, level))
    found = issues(ecg, windows)
    assert inside.sum() >= 20 and list(found[inside]) == ["flatline"] * inside.sum()
    assert list(found[outside]) == [None] * outside.sum()  # not one real window flagged


def test_ecg_one_flat_lead_of_two_is_caught():
    ecg = get_modality("ecg", ann=None, mode="sliding")

    def lead_off(segment):
        segment[:, 1] = 0.0
        return segment

    windows, inside, outside = spliced_windows(ecg, ECG_208, 20, 8, lead_off)
    found = issues(ecg, windows)
    assert list(found[inside]) == ["flatline"] * inside.sum() and inside.sum() >= 15
    assert list(found[outside]) == [None] * outside.sum()


def test_ecg_clipped_beats_are_caught():
    ecg = get_modality("ecg", ann=None, mode="beats")  # beats found by the R-peak detector, as live
    signal, _, _ = ecg.read_record(ECG_119)
    rail = np.quantile(signal[:, 0], 0.9)  # an ADC range that cuts every R wave
    windows, inside, outside = spliced_windows(ecg, ECG_119, 60, 20, lambda seg: np.minimum(seg, rail))
    found = issues(ecg, windows)
    assert inside.sum() >= 15 and list(found[inside]) == ["clipping"] * inside.sum()
    assert list(found[outside]) == [None] * outside.sum()


def test_ecg_amplitude_outside_the_learned_range_is_caught():
    ecg = get_modality("ecg", ann="pvc")
    beats = ecg.load(ECG_119)
    ecg.fit_quality(beats.X[beats.y == 0])
    (low, high), = ecg.amplitude_range_
    assert 1.5 < low < high < 5.0  # mV: the peak-to-peak range of this record's normal beats
    stream = get_modality("ecg", ann=None)  # beats from the R-peak detector, as live
    stream.amplitude_range_ = ecg.amplitude_range_
    windows, inside, outside = spliced_windows(stream, ECG_119, 30, 20, lambda seg: seg * 10)  # a wrong gain
    found = issues(stream, windows)
    assert list(found[inside]) == ["amplitude"] * inside.sum() and inside.sum() >= 15
    assert list(found[outside]) == [None] * outside.sum()
    only_amplitude = load_modality({**ecg.to_dict(), "params": {"ann": "pvc", "quality_checks": ["amplitude"]}})
    assert set(issues(only_amplitude, beats.X * 0.1)) == {"amplitude"}  # too small (a nearly flat line otherwise)


def test_ecg_models_saved_without_a_learned_range_skip_only_that_check():
    """modality.json files written before the checks have no quality settings and no range."""
    ecg = get_modality("ecg", ann="pvc")
    beats = ecg.load(ECG_119)
    old = {"name": "ecg", "params": {"ann": "pvc"}, "state": {"n_channels_": 1}}
    restored = load_modality(old)
    assert list(issues(restored, beats.X * 10)) == [None] * len(beats)
    assert issues(restored, np.zeros((1, 1, 288)))[0] == "flatline"


def test_ecg_quality_settings_are_saved_and_each_check_can_be_switched_off():
    ecg = get_modality("ecg", ann="pvc", quality_checks=["clipping"], flat_min_s=0.5)
    beats = ecg.load(ECG_119)
    ecg.fit_quality(beats.X)
    restored = load_modality(ecg.to_dict())
    assert restored.flat_min_s == 0.5 and list(restored.quality_checks) == ["clipping"]
    np.testing.assert_allclose(restored.amplitude_range_, ecg.amplitude_range_)
    flat = np.zeros((1, 1, 288))
    assert restored.quality_issues(flat) == ["clipping"]  # flatline is off; a flat lead sits at its maximum
    assert load_modality({**ecg.to_dict(), "params": {"quality_checks": []}}).quality_issues(flat) == [None]
    with pytest.raises(ValueError, match=r"unknown quality_checks \['flatlnie'\]"):
        get_modality("ecg", quality_checks=["flatlnie"]).quality_issues(flat)


def test_audio_silence_and_clipping_are_caught_and_real_speech_passes():
    audio = get_modality("audio", sample_rate=8000, pattern="{digit}_{speaker}_{index}.wav")
    patches = audio.load(FSDD).X
    assert issues(audio, patches).tolist() == [None] * len(patches)
    clip = audio.read(f"{FSDD}/0_george_0.wav")
    silent = np.concatenate([clip, np.zeros(3 * audio.segment_len, np.float32)])  # a dead input after the word
    windows, starts = audio.cut(silent)
    in_silence = starts >= len(clip)
    assert in_silence.sum() >= 2 and set(issues(audio, windows[in_silence])) == {"silence"}
    assert set(issues(audio, windows[starts + audio.segment_len <= len(clip)])) <= {None}
    overdriven = np.clip(clip * 20, -1.0, 1.0)
    assert set(issues(audio, audio.cut(overdriven)[0])) == {"clipping"}
    only_silence = get_modality("audio", sample_rate=8000, quality_checks=["silence"])
    assert set(only_silence.quality_issues(audio.cut(overdriven)[0])) == {None}


@pytest.mark.parametrize("span", [1, 5, 72, 287, 288])
def test_numpy_sliding_range_and_runs_equal_scipy_filters_on_real_beats(span):
    """The checks run on numpy alone (no scipy in a scorer); they must decide as scipy.ndimage's filters did."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d

    from modalities.base import has_run, sliding_range

    beats = get_modality("ecg", ann="pvc").load(ECG_119).X.astype(np.float64)  # [N, 1, 288]
    beats[3, 0, 100:180] = 0.25  # a flat stretch, so equal values and runs both occur
    ranges = maximum_filter1d(beats, span, axis=-1) - minimum_filter1d(beats, span, axis=-1)
    np.testing.assert_array_equal(sliding_range(beats, span), ranges[..., span // 2: 288 - (span - 1) // 2])
    mask = beats >= np.quantile(beats, 0.3)
    runs = minimum_filter1d(mask.astype(np.uint8), span, axis=-1, mode="constant", cval=0).any(axis=-1)
    np.testing.assert_array_equal(has_run(mask, span), runs)
    assert has_run(mask, span).any() and not has_run(np.zeros_like(mask), span).any()
