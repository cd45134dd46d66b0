"""Open modality plug-in: `register_modality` and the `agad_stream.modalities` entry points.

The unit tests register classes by code and lay entry points as an installed package's
dist-info on sys.path. The integration test installs tests/data/accel-modality (a 3-axis
accelerometer package of its own) with pip into a folder outside the project, and trains,
publishes and scores it from the real Kafka broker through the `agad-stream` command.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.register_assert_rewrite("kafka_support")

import modalities  # noqa: E402
from kafka_support import process_args, read_topic, send, until_ids  # noqa: E402
from modalities import (  # noqa: E402
    Modality, ModalityPluginError, available_modalities, get_modality, load_modality, register_modality,
)

pytest_plugins = ["kafka_support"]

REPO = Path(__file__).resolve().parents[1]
ACCEL_PACKAGE = REPO / "tests" / "data" / "accel-modality"


class Tilt(Modality):
    name = "tilt"

    def __init__(self, length: int = 8) -> None:
        self.length = length

    @property
    def raw_shape(self) -> tuple[int, int]:
        return (1, self.length)


@pytest.fixture
def clean_registry(monkeypatch):
    """Registrations by code made in a test end with it."""
    monkeypatch.setattr(modalities, "_REGISTERED", {})


def install_entry_point(root: Path, monkeypatch, name: str, value: str, module_source: str | None = None) -> str:
    """An installed distribution (dist-info with one modality entry point) on sys.path; returns its module name."""
    module = value.split(":")[0]
    dist = root / f"plugin_{uuid.uuid4().hex[:8]}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.name.split('-')[0]}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{modalities.ENTRY_POINT_GROUP}]\n{name} = {value}\n")
    if module_source is not None:
        (root / f"{module}.py").write_text(module_source)
    monkeypatch.syspath_prepend(str(root))
    return module


PLUGIN_SOURCE = """
from modalities import Modality

class Sway(Modality):
    name = "sway"

    def __init__(self):
        pass

    @property
    def raw_shape(self):
        return (2, 4)
"""


# --------------------------------------------------------------------------- registration by code
def test_a_class_registered_by_code_is_listed_built_and_restored(clean_registry):
    register_modality("tilt", Tilt)
    assert "tilt" in available_modalities()
    tilt = get_modality("tilt", length=16)
    assert tilt.raw_shape == (1, 16) and load_modality(json.loads(json.dumps(tilt.to_dict()))).length == 16


def test_registration_as_decorator_and_as_a_module_path(clean_registry):
    @register_modality("tilt")
    class Decorated(Tilt):
        pass

    assert type(get_modality("tilt")) is Decorated
    register_modality("array2", "modalities.arrays:ArrayModality")  # found lazily, then held to its name
    with pytest.raises(ModalityPluginError, match=r"ArrayModality.name is 'array', it must be 'array2'"):
        get_modality("array2")


@pytest.mark.parametrize("name, target, message", [
    ("ecg", Tilt, r"'ecg' is built in \(modalities.ecg:ECGModality\)"),
    ("tilt", dict, r"not a subclass of modalities.Modality"),
    ("wobble", Tilt, r"Tilt.name is 'tilt', it must be 'wobble'"),
    ("two words", Tilt, r"without spaces"),
    ("tilt", "no_colon", r"expected 'module:Class'"),
])
def test_bad_registrations_are_refused_clearly(clean_registry, name, target, message):
    with pytest.raises(ValueError, match=message):
        register_modality(name, target)
    assert get_modality("ecg").name == "ecg"


def test_a_name_registered_twice_with_different_classes_is_refused(clean_registry):
    register_modality("tilt", Tilt)
    register_modality("tilt", Tilt)  # the same class again (a module imported twice) is harmless

    class Other(Tilt):
        pass

    with pytest.raises(ValueError, match=r"'tilt' is already registered as .*Tilt"):
        register_modality("tilt", Other)


def test_a_registered_module_path_that_cannot_be_imported_names_itself(clean_registry):
    register_modality("tilt", "no_such_module_here:Tilt")
    with pytest.raises(ModalityPluginError, match=r"'tilt' \(registered 'no_such_module_here:Tilt'\) failed to load: "
                                                  r"ModuleNotFoundError"):
        get_modality("tilt")


# --------------------------------------------------------------------------- entry points
def test_an_entry_point_is_listed_without_import_and_loaded_when_asked_for(tmp_path, monkeypatch, clean_registry):
    module = install_entry_point(tmp_path, monkeypatch, "sway", f"sway_{uuid.uuid4().hex[:8]}:Sway", PLUGIN_SOURCE)
    assert "sway" in available_modalities()
    assert module not in sys.modules  # listing does not import the plug-in
    sway = get_modality("sway")
    assert module in sys.modules and sway.raw_shape == (2, 4)
    assert type(load_modality(sway.to_dict())) is type(sway)
    with pytest.raises(ValueError, match=r"'sway' is already offered by the installed entry point 'sway = sway_"):
        register_modality("sway", "my_own:Sway")


def test_a_broken_entry_point_names_itself_and_leaves_the_built_ins_working(tmp_path, monkeypatch):
    module = f"broken_{uuid.uuid4().hex[:8]}"
    install_entry_point(tmp_path, monkeypatch, "broken", f"{module}:Nothing", "raise RuntimeError('no sensor driver')\n")
    assert "broken" in available_modalities() and "ecg" in available_modalities()
    with pytest.raises(ModalityPluginError, match=rf"'broken': entry point 'broken = {module}:Nothing' of plugin_\w+ 1.0 "
                                                  r"failed to load: RuntimeError: no sensor driver"):
        get_modality("broken")
    assert get_modality("array").name == "array" and get_modality("ecg").name == "ecg"


def test_an_entry_point_named_like_a_built_in_is_ignored_with_a_warning(tmp_path, monkeypatch):
    install_entry_point(tmp_path, monkeypatch, "ecg", "somebody_elses:ECG")
    with pytest.warns(UserWarning, match=r"ignoring the modality entry point 'ecg = somebody_elses:ECG'.*built-in"):
        names = available_modalities()
    assert names.count("ecg") == 1 and type(get_modality("ecg")).__module__ == "modalities.ecg"


def test_two_packages_offering_one_name_are_refused_naming_both(tmp_path, monkeypatch):
    install_entry_point(tmp_path / "a", monkeypatch, "sway", "sway_a:Sway")
    install_entry_point(tmp_path / "b", monkeypatch, "sway", "sway_b:Sway")
    with pytest.raises(ModalityPluginError, match=r"several installed entry points: 'sway = sway_.:Sway'.*'sway = sway_.:Sway'"):
        get_modality("sway")


# --------------------------------------------------------------------------- an installed package, end to end
def walking(n: int, rng: np.random.Generator, shaking: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples [n, 3] of a steady 2 Hz gait at 50 Hz plus gravity on z; `shaking` marks a stretch
    of strong 9 Hz shaking, labelled 1."""
    t = np.arange(n) / 50.0
    samples = np.stack([np.sin(2 * np.pi * 2 * t), 0.5 * np.sin(2 * np.pi * 2 * t + 1.0),
                        9.8 + 0.3 * np.sin(2 * np.pi * 4 * t)], axis=1) + 0.05 * rng.standard_normal((n, 3))
    labels = np.zeros(n, dtype=int)
    if shaking is not None:
        samples[shaking] += 3.0 * np.sin(2 * np.pi * 9 * t[shaking])[:, None]
        labels[shaking] = 1
    return samples, labels


def write_csv(path: Path, samples: np.ndarray, labels: np.ndarray) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y", "z", "label"])
        writer.writerows([[*np.round(s, 4), int(label)] for s, label in zip(samples, labels)])
    return path


def agad_stream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_an_installed_accelerometer_package_trains_publishes_and_scores_from_kafka(tmp_path, make_topics,
                                                                                   scorer_processes):
    site = tmp_path / "site"  # outside the project: our files stay as they are
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--quiet", "--target", str(site), str(ACCEL_PACKAGE)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (site / "agad_accel_example-0.1.0.dist-info" / "entry_points.txt").is_file()
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(site)])}

    rng = np.random.default_rng(0)
    train = write_csv(tmp_path / "walk.csv", *walking(4000, rng))
    test = write_csv(tmp_path / "walk-and-shake.csv", *walking(1024, rng, shaking=slice(512, 1024)))
    model, registry = tmp_path / "model", tmp_path / "registry"
    agad_stream(env, "train", "--modality", "accel", "--data", str(train), "--out", str(model), "--channels", "8,16",
                "--latent-dim", "8", "--max-steps", "60", "--target-fpr", "0.05", "--device", "cpu", "--quiet")
    assert json.loads((model / "modality.json").read_text())["name"] == "accel"
    agad_stream(env, "publish", "--model", str(model), "--model-registry", str(registry))

    topics = make_topics()
    args = process_args(topics, model)
    args[args.index("--model"):args.index("--model") + 2] = ["--model-registry", str(registry)]
    scorer = scorer_processes(args, env=env)
    scorer.wait_for("event=partitions_assigned partitions=")
    agad_stream(env, "replay", "--modality", "accel", "--data", str(test), "--topic", topics.input,
                "--bootstrap-servers", topics.bootstrap, "--rate", "0", "--quiet")
    stuck = {"id": "stuck", "stream": "wrist", "values": [[0.0] * 64, [0.0] * 64, [9.8] * 64]}
    short = {"id": "short", "stream": "wrist", "values": [[0.0] * 32] * 3}
    send(topics.bootstrap, topics.input, [Raw(json.dumps(m).encode()) for m in (stuck, short)])

    window_ids = {f"walk-and-shake.csv:{start}" for start in range(0, 1024, 64)}
    scores = {r.json()["id"]: r.json() for r in read_topic(topics.bootstrap, topics.output,
                                                             until_ids(window_ids | {"stuck"}))}
    assert set(scores) == window_ids | {"stuck"}, scorer.log()
    assert scores["stuck"]["is_anomaly"] and scores["stuck"]["reason"] == "signal_quality: stuck"
    normal = [s["score"] for i, s in scores.items() if s.get("label") == 0]
    shaking = [s["score"] for i, s in scores.items() if s.get("label") == 1]
    assert len(normal) == len(shaking) == 8 and min(shaking) > max(normal)
    assert all(s["model_version"] == 1 for i, s in scores.items())
    dead = read_topic(topics.bootstrap, topics.dlq, lambda records: len(records) >= 1)
    assert [r.headers["error"].split(b":")[0] for r in dead] == [b"wrong_shape"]
    assert scorer.terminate() == 0


class Raw:
    """A hand-made input message: JSON as the README's message contract gives it, keyed by stream."""

    def __init__(self, value: bytes):
        self.key, self.value, self.headers = b"wrist", value, []
