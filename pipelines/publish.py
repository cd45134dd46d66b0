"""`agad-stream publish`: add a trained model directory to a model registry as its next version.

A scorer started with `--model-registry` switches to the new version at its next batch.
"""

from __future__ import annotations

from agad_stream import ModelRegistry
from pipelines.model_dir import load_model_dir


def register(subparsers) -> None:
    p = subparsers.add_parser("publish", help="add a model directory to a registry (hot-reloaded by `score`)",
                              description=__doc__)
    p.add_argument("--model", required=True, help="model directory written by `train`")
    p.add_argument("--model-registry", "--registry", dest="registry", required=True,
                   help="registry directory (created if missing); --registry is the old spelling")
    p.add_argument("--no-switch", action="store_true", help="add the version without making it current")
    p.set_defaults(func=run)


def run(args) -> int:
    load_model_dir(args.model, device="cpu")
    version = ModelRegistry(args.registry).publish(args.model, make_current=not args.no_switch)
    print(f"published {args.model} as version {version} of {args.registry}" + ("" if args.no_switch else " (current)"))
    return 0
