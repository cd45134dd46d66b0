"""`agad-stream score`: live scoring of raw windows from Kafka (see pipelines/streaming).

Run several processes with the same --group to share a topic's partitions. SIGTERM or
Ctrl-C finishes the current batch, publishes it, commits and exits; a second Ctrl-C
quits at once (the uncommitted batch is then consumed again on restart).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from pipelines.kafka import codec
from pipelines.kafka.kafka_io import quiet_kafka_logging
from pipelines.streaming import membership
from pipelines.streaming.loop import Scorer, ScorerConfig
from pipelines.streaming.serving import ENGINES, ModelSource
from pipelines.streaming.thresholds import MODES, StreamThresholds, ThresholdConfig

#: Kafka and batching knobs. throughput: big batches, fewer requests (the former defaults).
#: latency: small batches closed after 5 ms, and neither the fetch nor the producer waits.
PRESETS = {
    "throughput": {"max_batch": 256, "max_wait_ms": 50, "fetch_max_wait_ms": 100, "linger_ms": 5},
    "latency": {"max_batch": 64, "max_wait_ms": 5, "fetch_max_wait_ms": 10, "linger_ms": 0},
}


def register(subparsers) -> None:
    p = subparsers.add_parser("score", help="score windows from a Kafka topic live (at-least-once, hot reload)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="model directory to serve (fixed)")
    model.add_argument("--model-registry", help="model registry directory; its current version is served and hot-reloaded")
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--in-topic", required=True, help="raw windows (JSON or binary float32)")
    p.add_argument("--out-topic", required=True, help="scores (JSON)")
    p.add_argument("--dlq-topic", required=True, help="dead letters: original message plus an 'error' header")
    p.add_argument("--group", required=True, help="consumer group; scorers in one group share the partitions")
    p.add_argument("--preset", choices=PRESETS, default="throughput",
                   help="batching and Kafka client waits: " + "; ".join(
                       f"{name}: " + ", ".join(f"{k}={v}" for k, v in knobs.items()) for name, knobs in PRESETS.items())
                   + " (default throughput); the four options below override single knobs")
    p.add_argument("--max-batch", type=int, help="most windows per micro-batch")
    p.add_argument("--max-wait-ms", type=int, help="longest wait to fill a batch after its first window")
    p.add_argument("--fetch-max-wait-ms", type=int, help="longest the broker holds a fetch that has no new record")
    p.add_argument("--linger-ms", type=int, help="producer wait for more records before sending a request")
    p.add_argument("--max-message-bytes", type=int, default=codec.DEFAULT_MAX_MESSAGE_BYTES,
                   help="larger input messages are dead-lettered as oversize")
    p.add_argument("--offset-reset", choices=("earliest", "latest"), default="earliest",
                   help="where a new group starts reading (default earliest)")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1...")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="onnx: ONNX Runtime on the CPU, no torch in the process (needs the generator.onnx that "
                        "`publish` exports); torch: the AGAD model itself, on the CPU or a GPU; auto (default): "
                        "onnx on the CPU, torch on a GPU or for a model without generator.onnx")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="CPU threads for inference, on either engine (default 1: on a busy or small machine more "
                        "threads contend with the Kafka client threads and slow down; scale out with one scorer "
                        "per core instead)")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0 = off)")
    p.add_argument("--session-timeout-ms", type=int, default=10_000,
                   help="a crashed scorer's partitions move to the others after this long (broker minimum 6000)")
    p.add_argument("--client-id", help="Kafka client id (default agad-scorer-HOST-PID)")
    p.add_argument("--group-instance-id",
                   help="static group membership: a scorer restarted with the same id takes its partitions back at "
                        "once, with no rebalance, while a stopped one keeps them unowned for --session-timeout-ms. "
                        "Default HOST-GROUP-SLOT, the slot being the lowest one no other scorer of the group on this "
                        "host holds; an empty string turns static membership off")
    p.add_argument("--slot", help=f"the slot of the default --group-instance-id (default: ${membership.SLOT_ENV}, "
                                  "else the lowest free one); two scorers on one host never hold the same slot")
    p.add_argument("--review-topic", help="also publish every flagged window here, with its values (for reviewers)")
    defaults = ThresholdConfig()
    p.add_argument("--threshold-mode", choices=MODES, default=defaults.mode,
                   help="global: the model's threshold for every stream; adaptive: a bounded quantile of each "
                        "stream's own recent scores after a warm-up (median + MAD of log scores); evt: the same from "
                        "a generalised Pareto tail around the stream's drifting mean (DSPOT) (default global)")
    p.add_argument("--threshold-quantile", type=float, default=defaults.quantile,
                   help=f"adaptive: quantile of a stream's recent scores (default {defaults.quantile})")
    p.add_argument("--threshold-warmup", type=int, default=defaults.warmup,
                   help=f"adaptive: windows per stream under the global threshold first (default {defaults.warmup})")
    p.add_argument("--threshold-state", help="adaptive, evt: file keeping per-stream state across restarts")
    p.set_defaults(func=run)


def claim_membership(args: argparse.Namespace) -> membership.SlotClaim | None:
    """The slot behind the default group instance id (None: an id was given, or static membership is off)."""
    if args.group_instance_id is not None:
        if args.slot is not None:
            raise ValueError("give --group-instance-id or --slot, not both")
        return None
    return membership.claim_slot(args.group, membership.parse_slot(
        args.slot if args.slot is not None else os.environ.get(membership.SLOT_ENV)))


def config_from_args(args: argparse.Namespace, claim: membership.SlotClaim | None = None) -> ScorerConfig:
    knobs = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in PRESETS[args.preset].items()}
    if knobs["max_batch"] < 1 or min(knobs["max_wait_ms"], knobs["fetch_max_wait_ms"], knobs["linger_ms"]) < 0:
        raise ValueError("--max-batch must be >= 1, and --max-wait-ms, --fetch-max-wait-ms, --linger-ms >= 0")
    if args.group_instance_id is not None and len(args.group_instance_id) > membership.MAX_ID_LENGTH:
        raise ValueError(f"--group-instance-id is longer than Kafka's {membership.MAX_ID_LENGTH} characters")
    extra = {"client_id": args.client_id} if args.client_id else {}
    instance_id = claim.instance_id if claim is not None else (args.group_instance_id or None)
    return ScorerConfig(
        bootstrap_servers=args.bootstrap_servers, in_topic=args.in_topic, out_topic=args.out_topic,
        dlq_topic=args.dlq_topic, group=args.group, **knobs,
        max_message_bytes=args.max_message_bytes, offset_reset=args.offset_reset, metrics_port=args.metrics_port,
        session_timeout_ms=args.session_timeout_ms, review_topic=args.review_topic, group_instance_id=instance_id,
        **extra,
    )


def thresholds_from_args(args: argparse.Namespace) -> StreamThresholds:
    return StreamThresholds(ThresholdConfig(mode=args.threshold_mode, quantile=args.threshold_quantile,
                                            warmup=args.threshold_warmup, window=max(args.threshold_warmup, 1000),
                                            state_path=args.threshold_state))


def stop_on_signals(scorer: Scorer) -> None:
    """First SIGTERM/SIGINT: finish the batch and stop; a second one exits at once."""

    def handle(signum, frame):
        if scorer.stopping:
            sys.exit(128 + signum)
        scorer.stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run(args: argparse.Namespace) -> int:
    quiet_kafka_logging()
    claim = claim_membership(args)  # held while this process lives
    config = config_from_args(args, claim)
    models = ModelSource(model_dir=args.model, registry=args.model_registry, device=args.device, engine=args.engine,
                         threads=args.torch_threads)
    scorer = Scorer(config, models, thresholds=thresholds_from_args(args))
    stop_on_signals(scorer)
    scorer.run()
    return 0
