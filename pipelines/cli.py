"""The ``agad-stream`` command: one subcommand per pipeline module.

COMMANDS maps each command to the module whose ``register(subparsers)`` adds it (and sets
``func``, called with the parsed arguments, returning an exit code). Only the module of the
command being run is imported: `agad-stream --help` and the light commands never pay for
torch, which the heavy modules import.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterable

from pipelines.kafka import security

#: command -> (module that registers it, one-line help for the command list)
COMMANDS = {
    "bench-images": ("pipelines.offline.bench_images", "one-vs-rest AUROC on Fashion-MNIST/MNIST (the paper's image table)"),
    "train": ("pipelines.offline.command", "train AGAD on normal windows of a dataset"),
    "evaluate": ("pipelines.offline.command", "metrics, plots and baselines on held-out windows"),
    "score-file": ("pipelines.offline.command", "score every window of a record or file into a CSV"),
    "publish": ("pipelines.streaming.publish", "add a model directory to a registry (hot-reloaded by `score`)"),
    "score": ("pipelines.streaming.command", "score windows from a Kafka topic live (at-least-once, hot reload)"),
    "replay": ("pipelines.streaming.replay", "stream a dataset's windows into a Kafka topic at a target rate"),
    "monitor": ("pipelines.streaming.monitor", "running summary of a scores topic: alarms, live AUROC, latency"),
    "demo": ("pipelines.demo.command", "train, serve and replay MIT-BIH ECG through Kafka; prints the live AUROC"),
    "retrain": ("pipelines.learning.retrain", "retrain on confirmed labels from Kafka, behind a promotion gate"),
    "models": ("pipelines.learning.models", "list, show, promote, roll back and prune registry versions"),
    "console": ("pipelines.console.command", "web console: live streams, alarms to confirm, model versions"),
}
#: commands with Kafka clients: each takes --kafka-config, and AGAD_KAFKA_* variables apply
KAFKA_COMMANDS = ("score", "replay", "monitor", "retrain", "console")


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full arguments of `commands` (default: all of them, importing every
    command module); the other commands are listed by name and help only."""
    parser = argparse.ArgumentParser(prog="agad-stream", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING...)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = list(COMMANDS) if commands is None else list(commands)
    for module in dict.fromkeys(COMMANDS[name][0] for name in chosen):
        importlib.import_module(module).register(subparsers)
    for name, (_, help_text) in COMMANDS.items():
        if name not in subparsers.choices:
            subparsers.add_parser(name, help=help_text, add_help=False)
    for name in set(KAFKA_COMMANDS) & set(chosen):
        subparsers.choices[name].add_argument(
            "--kafka-config", metavar="FILE",
            help="Kafka security settings (JSON or key=value): security_protocol, ssl_cafile, ssl_certfile, "
                 "ssl_keyfile, ssl_password, sasl_mechanism, sasl_username, sasl_password; "
                 "AGAD_KAFKA_<KEY> environment variables override it")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = build_parser(commands=()).parse_known_args(argv)[0].command
    args = build_parser(commands=[command]).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command in KAFKA_COMMANDS:
            security.configure(args.kafka_config)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as error:
        print(f"agad-stream {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
