"""Audio modality: patches, log-mel inputs, labels from names, synthetic and real (FSDD) WAVs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from modalities import aggregate_scores, load_modality, split_by_group
from modalities.audio import AudioModality, compile_pattern
from modalities.synthetic_audio import make_machine_sounds

FSDD = Path(__file__).parent / "data" / "fsdd"


@pytest.fixture(scope="module")
def machine_dir(tmp_path_factory):
    return make_machine_sounds(
        tmp_path_factory.mktemp("machine"), n_train=3, n_test_normal=2, n_test_anomaly=3, seconds=1.5, seed=3
    )


def test_defaults_and_prepare_shapes_2d_and_1d():
    audio = AudioModality()
    assert (audio.fft_size, audio.hop, audio.segment_len) == (1024, 512, 1024 + 31 * 512)
    assert AudioModality(sample_rate=8000).fft_size == 512
    raw = np.random.default_rng(0).normal(0, 0.1, (3, audio.segment_len)).astype(np.float32)
    x2 = audio.prepare(raw)
    assert x2.shape == (3, 1, 64, 32) and x2.dtype == np.float32
    x1 = AudioModality(layout="1d").prepare(raw)
    assert x1.shape == (3, 64, 32)
    np.testing.assert_allclose(x1, x2[:, 0])
    with pytest.raises(ValueError, match="does not match"):
        audio.prepare(np.zeros((2, 1000)))


def test_prepare_is_independent_of_batching():
    """The dB floor is per patch, so one streamed patch scores like the same patch offline."""
    audio = AudioModality(batch_size=2)
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1, (3, audio.segment_len)).astype(np.float32) * np.array([[1.0], [1e-3], [0.1]], np.float32)
    batch = audio.prepare(raw)
    for i in range(3):
        np.testing.assert_allclose(audio.prepare(raw[i]), batch[i : i + 1], rtol=1e-5, atol=1e-4)


def test_short_clip_is_zero_padded_and_long_clip_fully_covered():
    audio = AudioModality()
    short = np.ones(4000, dtype=np.float32)
    patches, starts = audio.cut(short)
    assert patches.shape == (1, audio.segment_len) and starts.tolist() == [0]
    assert patches[0, :4000].sum() == 4000 and not patches[0, 4000:].any()
    step = 16 * 512
    long = np.arange(audio.segment_len + 2 * step + 100, dtype=np.float32)
    patches, starts = audio.cut(long)
    assert starts.tolist() == [0, step, 2 * step, 3 * step]
    tail = len(long) - 3 * step
    assert patches[-1, tail - 1] == long[-1] and not patches[-1, tail:].any()


def test_aggregate_scores_per_clip():
    names, mean = aggregate_scores([1.0, 3.0, 5.0, 2.0], ["b", "b", "a", "b"])
    assert names.tolist() == ["b", "a"] and mean.tolist() == [2.0, 5.0]
    _, top = aggregate_scores([1.0, 3.0, 5.0, 2.0], ["b", "b", "a", "b"], how="max")
    assert top.tolist() == [3.0, 5.0]
    with pytest.raises(ValueError, match="how"):
        aggregate_scores([1.0], ["a"], how="median")


def test_synthetic_machine_sounds_round_trip(machine_dir):
    assert "SYNTHETIC" in (machine_dir / "README.txt").read_text()
    audio = AudioModality()
    train = audio.load(machine_dir, split="train")
    assert set(train.y) == {0} and len(set(train.source)) == 3
    assert all(s.startswith("train/normal_id_00_") for s in train.source)
    test = audio.load(machine_dir, split="test")
    names, labels = aggregate_scores(test.y, test.source, how="max")
    assert labels.tolist() == [1, 1, 1, 0, 0]
    assert {n.rsplit("_", 1)[-1] for n in names[:3]} == {"click.wav", "drift.wav", "am.wav"}
    # 1.5 s at 16 kHz = 24000 samples -> two half-overlapping patches of 16896
    assert len(test) == 2 * 5 and test.X.shape[1] == audio.segment_len
    audio8k, rate = sf.read(machine_dir / "train" / "normal_id_00_00000000.wav")
    assert rate == 16000 and len(audio8k) == 24000
    x = audio.prepare(test.X)
    assert np.isfinite(x).all() and x.shape == (10, 1, 64, 32)


def test_dcase_2021_names_and_unlabelled_files(machine_dir, tmp_path):
    normal = machine_dir / "test" / "normal_id_00_00000000.wav"
    shutil.copyfile(normal, tmp_path / "section_00_source_test_normal_0000.wav")
    shutil.copyfile(normal, tmp_path / "section_00_source_test_anomaly_0001.wav")
    w = AudioModality().load(tmp_path)
    assert w.y.tolist() == [1, 1, 0, 0]
    shutil.copyfile(normal, tmp_path / "live_capture.wav")
    assert AudioModality().load(tmp_path).y is None


def test_resampling_on_load(tmp_path):
    make_machine_sounds(tmp_path, n_train=1, n_test_normal=0, n_test_anomaly=0, seconds=1.0, sample_rate=8000)
    clip = AudioModality(sample_rate=16000).read(tmp_path / "train" / "normal_id_00_00000000.wav")
    assert len(clip) == 16000


def test_fsdd_pattern_labels_and_speaker_split():
    audio = AudioModality(
        sample_rate=8000,
        pattern="{digit}_{speaker}_{index}.wav",
        label_field="digit",
        normal_values=["0"],
        group_field="speaker",
    )
    w = audio.load(FSDD)
    assert set(w.group) == {"george", "jackson", "theo"}
    assert len(set(w.source)) == 18
    np.testing.assert_array_equal(w.y, (w.info["digit"] != "0").astype(np.int8))
    assert audio.prepare(w.X[:2]).shape == (2, 1, 64, 32)
    train, test = split_by_group(w, test_groups=["theo"])
    assert set(test.group) == {"theo"} and "theo" not in set(train.group)
    assert not set(train.source) & set(test.source)
    train, test = split_by_group(w, test_fraction=0.34, random_state=0)
    assert not set(train.group) & set(test.group)
    only_ones = AudioModality(sample_rate=8000, pattern="{digit}_{speaker}_{index}.wav", label_field="digit",
                              normal_values=["0"], anomaly_values=["1"]).load(FSDD)
    assert len(set(only_ones.source)) == 12
    restored = load_modality(json.loads(json.dumps(audio.to_dict())))
    np.testing.assert_allclose(restored.prepare(w.X[:2]), audio.prepare(w.X[:2]))


def test_compile_pattern():
    m = compile_pattern("{digit}_{speaker}_{index}.wav").fullmatch("7_yweweler_32.wav")
    assert m.groupdict() == {"digit": "7", "speaker": "yweweler", "index": "32"}
    with pytest.raises(ValueError, match="placeholders"):
        compile_pattern("plain.wav")


def test_audio_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files.*empty"):
        AudioModality().load(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notes.wav").write_text("this is not audio")
    with pytest.raises(ValueError, match="notes.wav"):
        AudioModality().load(bad)
    cut = tmp_path / "cut"
    cut.mkdir()
    data = (FSDD / "0_george_0.wav").read_bytes()
    (cut / "header.wav").write_bytes(data[:30])
    with pytest.raises(ValueError, match="header.wav"):
        AudioModality().load(cut / "header.wav")
    (cut / "data.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="data.wav is truncated"):
        AudioModality().load(cut / "data.wav")
    shutil.copyfile(FSDD / "0_george_0.wav", tmp_path / "empty" / "george-zero.wav")
    with pytest.raises(ValueError, match="george-zero.wav in .* does not match pattern"):
        AudioModality(pattern="{digit}_{speaker}_{index}.wav").load(tmp_path / "empty")
    with pytest.raises(ValueError, match="not a field"):
        AudioModality(pattern="{digit}_{speaker}_{index}.wav", label_field="word", normal_values=["0"]).load(FSDD)
    with pytest.raises(FileNotFoundError, match="missing"):
        AudioModality().load(tmp_path / "missing")
    with pytest.raises(ValueError, match="pass split"):
        make_machine_sounds(tmp_path / "m", n_train=1, n_test_normal=0, n_test_anomaly=0, seconds=0.1)
        AudioModality().load(tmp_path / "m")
