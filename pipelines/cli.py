"""The ``agad-stream`` command: one subcommand per pipeline module.

Each module listed in COMMAND_MODULES defines ``register(subparsers)``, which adds
its subcommands and sets ``func`` (called with the parsed arguments, returns an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipelines.streaming import security

COMMAND_MODULES = [
    "pipelines.bench_images",
    "pipelines.offline",
    "pipelines.publish",
    "pipelines.kafka_scorer",
    "pipelines.replay",
    "pipelines.monitor",
    "pipelines.demo",
    "pipelines.learning.retrain",
    "pipelines.learning.models",
    "pipelines.console.command",
]
#: commands with Kafka clients: each takes --kafka-config, and AGAD_KAFKA_* variables apply
KAFKA_COMMANDS = ("score", "replay", "monitor", "retrain", "console")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agad-stream", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING...)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for name in KAFKA_COMMANDS:
        subparsers.choices[name].add_argument(
            "--kafka-config", metavar="FILE",
            help="Kafka security settings (JSON or key=value): security_protocol, ssl_cafile, ssl_certfile, "
                 "ssl_keyfile, ssl_password, sasl_mechanism, sasl_username, sasl_password; "
                 "AGAD_KAFKA_<KEY> environment variables override it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
