"""G as an ONNX graph, so a scorer can serve a model with ONNX Runtime and without torch.

The graph is G alone, taken in eval mode (BatchNorm with its running statistics, the
main BN only: the auxiliary BN serves pseudo-anomalies during training, never a test
window), with a dynamic batch dimension. Before a graph is written, `check_graph` runs
it with ONNX Runtime on a probe batch of another size than the traced one and compares
it with torch's G in eval mode: a graph traced in training mode (whose BatchNorms used,
or updated, batch statistics), one through the auxiliary BN, or one with a fixed batch
size is refused. Needs the `onnx`, `onnxscript` and `onnxruntime` packages (the `onnx`
extra); a generator the exporter cannot trace is left to torch.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from agad_stream.checkpoint import ONNX_FILE, ONNX_SHA256_KEY, CheckpointError, record_file

log = logging.getLogger("agad_stream")

OPSET = 18
INPUT_NAME = "x"
#: the graph's output must match torch's G to this, relative to the reconstruction's largest value
PARITY_TOLERANCE = 1e-5
PROBE_BATCH = 3
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


class ExportError(ValueError):
    """A generator that could not be exported, or whose graph would not score as torch does."""


def check_graph(graph_bytes: bytes, generator: torch.nn.Module, window_shape: tuple[int, ...]) -> None:
    """Raise ExportError unless the ONNX graph reproduces ``generator`` in eval mode on a probe batch."""
    import onnxruntime

    for node in _nodes(graph_bytes):
        if node.op_type == "BatchNormalization" and any(a.name == "training_mode" and a.i for a in node.attribute):
            raise ExportError(f"BatchNormalization {node.name!r} is in training mode: G was not in eval mode")
        if any(".aux." in name for name in node.input):
            raise ExportError(f"node {node.name!r} uses the auxiliary BN, which test time never uses")
    probe = np.random.default_rng(0).standard_normal((PROBE_BATCH, *window_shape)).astype(np.float32)
    was_training = generator.training
    with torch.inference_mode():
        expected = generator.eval()(torch.from_numpy(probe)).numpy()
    generator.train(was_training)
    try:
        session = onnxruntime.InferenceSession(graph_bytes, providers=["CPUExecutionProvider"])
        actual = session.run(None, {INPUT_NAME: probe})[0]
    except Exception as error:
        raise ExportError(f"ONNX Runtime cannot run the graph on {PROBE_BATCH} windows: {error}") from None
    gap = float(np.abs(actual - expected).max()) if actual.shape == expected.shape else np.inf
    if not gap <= PARITY_TOLERANCE * float(np.abs(expected).max()) + 1e-7:
        raise ExportError(f"the graph's reconstructions differ from G in eval mode by up to {gap:.3g} "
                          "(traced in training mode, through the auxiliary BN, or with a fixed batch size?)")


def _nodes(graph_bytes: bytes):
    import onnx

    return onnx.load_from_string(graph_bytes).graph.node


def export_generator(generator: torch.nn.Module, window_shape: tuple[int, ...], path: Path) -> None:
    """Write ``generator`` (in eval mode, on the CPU) to ``path`` as an ONNX graph with a dynamic batch."""
    generator = generator.cpu().eval()
    example = torch.zeros((2, *window_shape), dtype=torch.float32)
    for name in EXPORTER_LOGGERS:  # their INFO lines narrate every optimiser pass
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        program = torch.onnx.export(
            generator, (example,), input_names=[INPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=OPSET, dynamo=True, optimize=True, verbose=False,
        )
        graph_bytes = program.model_proto.SerializeToString()
    except Exception as error:  # the exporter raises many types; any of them means "stay on torch"
        raise ExportError(f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}") from None
    check_graph(graph_bytes, generator, window_shape)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as staged:
        staged.write(graph_bytes)
        staged.flush()
        os.fsync(staged.fileno())
    os.replace(staged.name, path)


def export_checkpoint(directory: str | os.PathLike, model) -> bool:
    """Add generator.onnx (and its SHA-256 in agad.json) to the checkpoint ``directory`` of the
    fitted AGAD ``model``; False, with one log line saying why, when G cannot be exported."""
    directory = Path(directory)
    try:
        export_generator(model.generator_, tuple(model.window_shape_), directory / ONNX_FILE)
    except (ExportError, ImportError) as error:
        (directory / ONNX_FILE).unlink(missing_ok=True)
        log.warning("generator %r not exported to ONNX, scorers will run it with torch: %s", model.generator, error)
        return False
    finally:
        model.generator_.to(model.device_)
    try:
        record_file(directory, ONNX_FILE, ONNX_SHA256_KEY)
    except CheckpointError:
        (directory / ONNX_FILE).unlink(missing_ok=True)
        raise
    return True
