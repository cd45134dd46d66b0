"""ONNX export at publish and the torch-free scoring engine: parity with torch, checksums, fallbacks.

Parity is checked on real windows (MIT-BIH beats for 1D, Fashion-MNIST images for 2D)
for every built-in generator, trained with and without the auxiliary BN.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agad_stream import AGAD, CheckpointError, ModelRegistry, register_generator
from agad_stream.batchnorm import DualBatchNorm, bn_route
from agad_stream.checkpoint import ONNX_FILE, ONNX_SHA256_KEY
from agad_stream.onnx_export import ExportError, check_graph, export_checkpoint
from modalities import get_modality
from modalities.image import ImageModality
from pipelines.cli import main as cli_main
from pipelines.offline.model_dir import load_model_modality, save_model_dir
from pipelines.streaming.onnx_engine import OnnxAGAD
from pipelines.streaming.serving import ModelSource

pytest.register_assert_rewrite("kafka_support")

from kafka_support import messages, read_topic, send, until_ids  # noqa: E402
from test_cli_lazy import imported_modules  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: model_dirs, ecg_windows, make_topics

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
#: small and briefly trained (lr 10x the default, so G moves well away from its initialisation)
TINY = dict(channels=(8, 16, 32), latent_dim=16, batch_size=32, max_steps=20, lr=2e-3, device="cpu", verbose=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ecg():
    """(modality, raw windows, labels) of record 119's first 3 minutes."""
    modality = get_modality("ecg", ann="pvc")
    windows = modality.load(DATA / "mitdb-pvc" / "119")
    return modality, windows.X, windows.y


@pytest.fixture(scope="module")
def images():
    """(modality, raw images, labels) of the Fashion-MNIST slice, class 0 normal."""
    modality = ImageModality(normal_classes=[0])
    windows = modality.load(DATA / "fashion-mnist", split="train")
    return modality, windows.X, windows.y


def published(tmp_path: Path, model: AGAD, modality) -> Path:
    """A model directory with the exported graph, as `publish` writes into the registry."""
    directory = save_model_dir(tmp_path / "model", model, modality)
    assert export_checkpoint(directory, model)
    return directory


@pytest.fixture(scope="module")
def test_split(ecg, images):
    """(modality, training windows, test windows) per data set: the test windows were never seen in
    training, nor in calibration (whose windows' scores the threshold is one of)."""
    modality, raw, y = ecg
    cut = int(0.6 * len(raw))  # beats in time order: the first 60 % of the record to train on
    ecg_train, ecg_test = modality.prepare(raw[:cut][y[:cut] == 0]), modality.prepare(raw[cut:])
    modality_2d, raw_2d, y_2d = images
    image_test = modality_2d.load(DATA / "fashion-mnist", split="test").X
    return {"ecg": (modality, ecg_train, ecg_test),
            "images": (modality_2d, modality_2d.prepare(raw_2d[y_2d == 0]), modality_2d.prepare(image_test))}


@pytest.mark.parametrize("aux_bn", [True, False], ids=["aux-bn", "no-aux-bn"])
@pytest.mark.parametrize("generator", ["naive", "unet", "unetpp"])
@pytest.mark.parametrize("data", ["ecg", "images"])
def test_both_engines_score_real_windows_alike(data, generator, aux_bn, test_split, tmp_path):
    modality, X_train, X = test_split[data]
    model = AGAD(generator=generator, aux_bn=aux_bn, random_state=0, **TINY).fit(X_train)
    onnx_model = OnnxAGAD(published(tmp_path, model, modality))

    torch_scores, torch_residuals = model.score_and_residuals(X)
    onnx_scores, onnx_residuals = onnx_model.score_and_residuals(X)
    np.testing.assert_allclose(onnx_scores, torch_scores, rtol=1e-4)
    reconstruction = X - torch_residuals  # compared on their own scale: the scores are dominated by x itself
    np.testing.assert_allclose(X - onnx_residuals, reconstruction, rtol=1e-4, atol=1e-5 * np.abs(reconstruction).max())
    assert onnx_model.threshold_ == model.threshold_
    np.testing.assert_array_equal(onnx_scores > onnx_model.threshold_, torch_scores > model.threshold_)


def trained_ecg_model(ecg) -> AGAD:
    modality, raw, y = ecg
    return AGAD(random_state=0, **TINY).fit(modality.prepare(raw[y == 0]))


def test_a_graph_in_training_mode_or_through_the_auxiliary_bn_is_refused(ecg):
    model = trained_ecg_model(ecg)
    window, generator = model.window_shape_, model.generator_
    training = io.BytesIO()  # the TorchScript exporter keeps BatchNorm in training mode when asked to
    torch.onnx.export(copy.deepcopy(generator).train(), (torch.zeros(2, *window),), training, input_names=["x"],
                      dynamo=False, training=torch.onnx.TrainingMode.TRAINING, dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(ExportError, match="training mode"):
        check_graph(training.getvalue(), generator, window)

    through_aux = copy.deepcopy(generator).train()
    for layer in through_aux.modules():  # an auxiliary BN whose statistics differ from the main one's
        if isinstance(layer, DualBatchNorm):
            layer.aux.running_mean += 1.0
    with bn_route("aux", through_aux):
        program = torch.onnx.export(through_aux, (torch.zeros(2, *window),), input_names=["x"], dynamo=True,
                                    dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), verbose=False)
    with pytest.raises(ExportError, match="differ from G in eval mode"):
        check_graph(program.model_proto.SerializeToString(), generator, window)

    fixed_batch = torch.onnx.export(copy.deepcopy(generator).eval(), (torch.zeros(2, *window),), input_names=["x"],
                                    dynamo=True, verbose=False)
    with pytest.raises(ExportError, match="cannot run the graph on 3 windows"):
        check_graph(fixed_batch.model_proto.SerializeToString(), generator, window)


def test_publish_exports_the_graph_and_a_tampered_graph_is_refused(ecg, tmp_path):
    modality = ecg[0]
    model_dir = save_model_dir(tmp_path / "trained", trained_ecg_model(ecg), modality)
    registry = ModelRegistry(tmp_path / "registry")
    assert cli_main(["publish", "--model", str(model_dir), "--registry", str(registry.root)]) == 0
    assert not (model_dir / ONNX_FILE).exists()  # the user's directory is left as it was
    version = registry.current_path()
    metadata = json.loads((version / "agad.json").read_text())
    assert len(metadata[ONNX_SHA256_KEY]) == 64
    served = ModelSource(registry=registry.root, engine="onnx", device="cpu").load()
    assert isinstance(served.model, OnnxAGAD) and served.version == 1

    graph = bytearray((version / ONNX_FILE).read_bytes())
    graph[len(graph) // 2] ^= 0xFF
    (version / ONNX_FILE).write_bytes(bytes(graph))
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        OnnxAGAD(version)
    with pytest.raises(ValueError, match="cannot serve model version 1"):
        ModelSource(registry=registry.root, engine="onnx", device="cpu").load()


class Untraceable(nn.Module):
    """A user generator whose forward depends on its input's values: the exporter cannot trace it."""

    def __init__(self, ndim, in_channels, spatial_shape, **options):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        if float(x.abs().max()) > 1e9:  # data-dependent Python control flow
            return x
        return x * self.scale


def test_an_unexportable_generator_is_published_and_served_with_torch(ecg, tmp_path, caplog):
    register_generator("untraceable-test", Untraceable)
    modality, raw, y = ecg
    model = AGAD(generator="untraceable-test", random_state=0, **TINY).fit(modality.prepare(raw[y == 0]))
    directory = save_model_dir(tmp_path / "model", model, modality)
    with caplog.at_level(logging.WARNING, logger="agad_stream"):
        assert not export_checkpoint(directory, model)
    lines = [r.getMessage() for r in caplog.records if "not exported to ONNX" in r.getMessage()]
    assert len(lines) == 1 and "untraceable-test" in lines[0]
    assert not (directory / ONNX_FILE).exists()
    assert ONNX_SHA256_KEY not in json.loads((directory / "agad.json").read_text())
    served = ModelSource(model_dir=directory, engine="auto", device="cpu").load()
    assert isinstance(served.model, AGAD)  # auto falls back to torch
    with pytest.raises(ValueError, match="has no generator.onnx"):
        ModelSource(model_dir=directory, engine="onnx", device="cpu").load()


def test_hot_reload_on_the_onnx_engine_skips_a_bad_version(ecg, tmp_path):
    modality = ecg[0]
    model = trained_ecg_model(ecg)
    good = published(tmp_path / "good", model, modality)
    registry = ModelRegistry(tmp_path / "registry")
    registry.publish(good)
    source = ModelSource(registry=registry.root, engine="onnx", device="cpu")
    assert source.load().version == 1

    tampered = tmp_path / "tampered"
    shutil.copytree(good, tampered)
    (tampered / "weights.pt").write_bytes(b"changed")  # refused on this engine too, though it never reads it
    registry.publish(tampered)
    assert not source.refresh() and source.current.version == 1

    registry.publish(good)
    assert source.refresh() and source.current.version == 3
    assert isinstance(source.current.model, OnnxAGAD)
    np.testing.assert_allclose(source.current.score(ecg[1][:8])[0], model.score_samples(modality.prepare(ecg[1][:8])),
                               rtol=1e-4)


SERVE_WITHOUT_TORCH = """
import sys
import numpy as np
from pipelines.kafka import codec
from pipelines.streaming.serving import ModelSource
served = ModelSource(model_dir=sys.argv[1], engine="onnx", device="cpu").load()
raw = np.load(sys.argv[2])
scores, residuals = served.score(raw)
segments = codec.top_segments(residuals)
quality = served.modality.quality_issues(raw)
assert len(scores) == len(raw) == len(segments) == len(quality) and np.isfinite(scores).all()
np.save(sys.argv[3], scores)
print(sorted({m.split('.')[0] for m in sys.modules} & {"torch", "torchaudio", "wfdb", "scipy"}))
"""


@pytest.mark.parametrize("data", ["ecg", "array", "images"])
def test_a_scorer_on_the_onnx_engine_imports_neither_torch_nor_wfdb_nor_scipy(data, ecg, images, tmp_path):
    if data == "images":
        modality, raw, y = images
    else:
        modality, raw, y = ecg
        if data == "array":  # the same beats, read back from an .npz file of plain [N, L] arrays
            np.savez(tmp_path / "beats.npz", X=raw[:, 0], y=y)
            modality = get_modality("array")
            windows = modality.load(tmp_path / "beats.npz")
            raw, y = windows.X, windows.y
    model = AGAD(random_state=0, **TINY).fit(modality.prepare(raw[y == 0]))
    directory = published(tmp_path, model, modality)
    np.save(tmp_path / "raw.npy", raw[:20])
    result = subprocess.run([sys.executable, "-c", SERVE_WITHOUT_TORCH, str(directory), str(tmp_path / "raw.npy"),
                             str(tmp_path / "scores.npy")], capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    np.testing.assert_allclose(np.load(tmp_path / "scores.npy"), model.score_samples(modality.prepare(raw[:20])),
                               rtol=1e-4)


def test_numpy_image_resize_equals_torch_bilinear(images):
    modality, raw, _ = images
    expected = F.interpolate(torch.from_numpy(raw[:, None]), size=(32, 32), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(modality.prepare(raw), expected.clamp(0, 1).numpy(), atol=1e-6)
    squeezed = ImageModality(size=20)
    squeezed.image_shape_ = raw.shape[1:]
    expected = F.interpolate(torch.from_numpy(raw[:, None]), size=(20, 20), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(squeezed.prepare(raw), expected.clamp(0, 1).numpy(), atol=5e-6)  # float32 sums


@pytest.mark.kafka
def test_the_score_command_on_the_onnx_engine_scores_kafka_windows_as_torch_does(model_dirs, ecg_windows, make_topics,
                                                                                 tmp_path):
    topics = make_topics()
    registry = ModelRegistry(tmp_path / "registry")
    assert cli_main(["publish", "--model", str(model_dirs[0]), "--registry", str(registry.root)]) == 0
    batch = messages(ecg_windows, encoding="binary")
    send(topics.bootstrap, topics.input, batch)
    log_path = tmp_path / "scorer.log"  # a file, not a pipe: the import report alone would fill a pipe and block
    with open(log_path, "w") as log:
        scorer = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "pipelines.cli", "score", "--model-registry",
             str(registry.root), "--engine", "onnx", "--device", "cpu", "--bootstrap-servers", topics.bootstrap,
             "--in-topic", topics.input, "--out-topic", topics.output, "--dlq-topic", topics.dlq, "--group",
             topics.group], stderr=log, env=ENV, cwd=REPO)
        try:
            scored = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}), timeout_s=300)
        finally:
            scorer.send_signal(signal.SIGTERM)
            scorer.wait(timeout=60)
    stderr = log_path.read_text()
    assert scorer.returncode == 0, stderr[-2000:]
    modules = imported_modules(stderr)
    assert "onnxruntime" in modules and "torch" not in modules

    model, modality = AGAD.load(model_dirs[0], device="cpu"), load_model_modality(model_dirs[0])
    expected = dict(zip((m.id for m in batch), model.score_samples(modality.prepare(ecg_windows.X))))
    failed_quality = dict(zip((m.id for m in batch), modality.quality_issues(ecg_windows.X)))
    by_id = {record.json()["id"]: record.json() for record in scored}
    ids = sorted(expected)
    assert set(by_id) == set(ids), f"{len(set(ids) - set(by_id))} windows not scored; scorer log: {stderr[-1500:]}"
    np.testing.assert_allclose([by_id[i]["score"] for i in ids], [expected[i] for i in ids], rtol=1e-4)
    # These beats trained the model, and its threshold is one calibration beat's own torch score: a tie
    # that 1e-7 of float noise may tip either way. Decisions must agree on every other beat.
    ties = {i for i in ids if abs(expected[i] - model.threshold_) <= 1e-5 * model.threshold_}
    assert len(ties) <= 1
    disagreements = [(by_id[i], expected[i], failed_quality[i]) for i in ids if i not in ties
                     and by_id[i]["is_anomaly"] != (bool(expected[i] > model.threshold_) or failed_quality[i] is not None)]
    assert not disagreements, disagreements[:3]
    assert all(by_id[i]["model_version"] == 1 for i in ids)
