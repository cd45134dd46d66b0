"""`agad-stream models`: list, inspect and switch the versions of a model registry.

promote and rollback load a version (checksums, shapes, modality) before making it
current, so a version that fails to load never serves. Every switch and removal is
appended to the registry log.

reference stores the normal windows every retrain trains on and the gate validates on.
Publish version 1 first: the windows are checked against the current model's window
shape ([N, C, L] raw windows, or [N, L] for a one-channel model). They are stored once;
--replace stores a new set (the gate's validation set changes with it).
"""

from __future__ import annotations

import argparse
import json
import time

from agad_stream import ModelRegistry
from modalities.arrays import read_npy
from pipelines.learning.reference import DEFAULT_HOLDOUT, save_reference
from pipelines.offline.model_dir import load_model_dir
from pipelines.streaming.serving import resolve_raw_shape

SWITCH_EVENTS = ("promoted", "manual_promote", "rollback")


def switch_to(registry: ModelRegistry, version: int, event: str) -> int:
    """Make `version` current after checking that it loads; returns the previous current version."""
    load_model_dir(registry.path(version), device="cpu")
    try:
        previous = registry.current_version()
    except ValueError:  # a damaged `current` pointer: promoting a version is how it is repaired
        previous = None
    registry.set_current(version)
    registry.append_log({"event": event, "version": version, "previous": previous})
    return previous


def rollback_target(registry: ModelRegistry) -> int:
    """The version that was current before the current one, from the registry log."""
    current = registry.current_version()
    for entry in reversed(registry.read_log()):
        if entry.get("event") in SWITCH_EVENTS and entry.get("version") == current:
            previous = entry.get("previous", entry.get("parent"))
            if previous is not None and previous in registry.versions():
                return previous
    raise ValueError(f"the registry log names no earlier version for current version {current}; use --to V")


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list, show, promote, roll back and prune registry versions",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-registry", required=True, help="registry directory")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="versions, the current one marked, with their publish time and gate decision")
    show = actions.add_parser("show", help="a version's metadata and its log entries")
    show.add_argument("version", type=int)
    promote = actions.add_parser("promote", help="make a version current (after checking that it loads)")
    promote.add_argument("version", type=int)
    rollback = actions.add_parser("rollback", help="return to the previously current version")
    rollback.add_argument("--to", type=int, help="this version instead of the previous one")
    prune = actions.add_parser("prune", help="delete all but the newest versions (never the current one)")
    prune.add_argument("--keep", type=int, required=True)
    reference = actions.add_parser("reference", help="store the reference normal windows (once per registry)")
    reference.add_argument("--windows", required=True,
                           help=".npy of raw normal windows [N, C, L] in the current model's window shape "
                                "([N, L] for one channel)")
    reference.add_argument("--replace", action="store_true",
                           help="replace the stored reference windows (the gate's validation set changes with them)")
    reference.add_argument("--holdout", type=float, default=DEFAULT_HOLDOUT,
                           help=f"share kept for the gate's validation set (default {DEFAULT_HOLDOUT})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    registry = ModelRegistry(args.model_registry)
    if args.action != "reference" and not registry.versions():
        raise FileNotFoundError(f"model registry {registry.root} has no versions")
    if args.action == "list":
        current = registry.current_version()
        for version in registry.versions():
            meta = registry.metadata(version)
            figures = meta.get("candidate") or {}
            print(f"{'*' if version == current else ' '} {version:4d}  {_published(meta)}  {meta.get('decision', 'published'):9s}"
                  f"  parent={meta.get('parent', '-')}  auroc={_figure(figures.get('auroc'))}"
                  f"  recall={_figure(figures.get('recall'))}  fpr={_figure(figures.get('fpr'))}")
    elif args.action == "show":
        entries = [e for e in registry.read_log() if e.get("version") == args.version]
        print(json.dumps({"version": args.version, "current": registry.current_version() == args.version,
                          "metadata": registry.metadata(args.version), "log": entries}, indent=2))
    elif args.action == "promote":
        previous = switch_to(registry, args.version, "manual_promote")
        print(f"version {args.version} is current (was {previous})")
    elif args.action == "rollback":
        target = args.to if args.to is not None else rollback_target(registry)
        previous = switch_to(registry, target, "rollback")
        print(f"rolled back from version {previous} to {target}")
    elif args.action == "prune":
        if args.keep < 1:
            raise ValueError(f"--keep must be >= 1, got {args.keep}")
        current = registry.current_version()
        doomed = [v for v in registry.versions()[:-args.keep] if v != current]
        for version in doomed:
            registry.remove(version)
            registry.append_log({"event": "pruned", "version": version})
        print(f"removed versions {doomed or 'none'}; kept {registry.versions()}")
    else:
        model, modality = load_model_dir(registry.current_path(), device="cpu")
        raw_shape = resolve_raw_shape(modality, model.window_shape_)
        n_train, n_validation = save_reference(registry, read_npy(args.windows)[0], args.holdout, raw_shape=raw_shape,
                                               replace=args.replace)
        print(f"{'replaced the reference set: ' if args.replace else ''}stored {n_train} reference training and "
              f"{n_validation} validation normal windows {list(raw_shape)} in {registry.root}")
        if args.replace:
            registry.append_log({"event": "reference_replaced", "train": n_train, "validation": n_validation})
    return 0


def _published(meta: dict) -> str:
    """When the version entered the registry (local time); '-' for one published before this was recorded."""
    at = meta.get("published_at")
    return "-" * 19 if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"
