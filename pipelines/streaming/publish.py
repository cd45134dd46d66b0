"""`agad-stream publish`: add a trained model directory to a model registry as its next version.

A scorer started with `--model-registry` switches to the new version at its next batch.
The version gets G exported as generator.onnx (its SHA-256 in agad.json), which the
scorer's onnx engine serves without torch; a generator that cannot be exported is
published without it and served with torch. The model directory itself is left as it is.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from agad_stream import ModelRegistry
from pipelines.offline.model_dir import load_model_dir


def register(subparsers) -> None:
    p = subparsers.add_parser("publish", help="add a model directory to a registry (hot-reloaded by `score`)",
                              description=__doc__)
    p.add_argument("--model", required=True, help="model directory written by `train`")
    p.add_argument("--model-registry", "--registry", dest="registry", required=True,
                   help="registry directory (created if missing); --registry is the old spelling")
    p.add_argument("--no-switch", action="store_true", help="add the version without making it current")
    p.set_defaults(func=run)


def run(args) -> int:
    from agad_stream.onnx_export import export_checkpoint

    model, _ = load_model_dir(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(args.model, staged)
        export_checkpoint(staged, model)
        version = ModelRegistry(args.registry).publish(staged, make_current=not args.no_switch)
    print(f"published {args.model} as version {version} of {args.registry}" + ("" if args.no_switch else " (current)"))
    return 0
