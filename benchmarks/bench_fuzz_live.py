"""Live fuzzing run (issue 10): good windows and hostile messages, some over 1 MB, through the
real `agad-stream score` process on a private broker; then every record of the scores and
dead-letter topics is checked.

    nice python benchmarks/bench_fuzz_live.py [--good 10000] [--bad 10000] [--big 100]
        [--big-max-bytes 8000000] [--long-keys 100] [--huge 100] [--partitions 2] [--seed 0] [--out FILE]

--bad hostile messages of the 20 kinds of tests/hostile_messages.py (about one in twenty an
"oversize" value just over the scorer's 1,000,000-byte input limit, small enough to be
dead-lettered whole) are shuffled among --good ECG windows (half JSON, half binary) with
--big more "oversize" ones of 1.04 MB to --big-max-bytes (log-uniform), larger than the
dead-letter topic's limit (the broker default, 1048588) for most of them. The input topic's
max.message.bytes and the producer's max_request_size are raised so that they all reach the
scorer. --long-keys more messages carry a key of 257 bytes to 600 kB (0xff or ASCII; issue 19:
such a key once became a score too large for the output topic and stopped the partition), and
--huge windows of finite values so large (1e18 to 3e38) that their scores overflow. The scorer
runs from before the first message is sent.

Pass when: every good id (huge windows included) is scored exactly once and nothing else is
scored; every huge window is an anomaly; every score message is strict JSON; every bad message
is dead-lettered exactly once (matched by its source partition and offset) with the expected
reason, its key, its original headers and its original value byte for byte, or, only for an
oversize value too large for the dead-letter topic, a reference whose original-size and
original-sha256 headers match the value sent; no good window is dead-lettered; the scorer is
still running once everything is out, and exits 0 on SIGTERM. The broker is a separate
instance (scripts/kafka-local.sh, own directory and free ports), never the shared one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

from kafka import TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
from live_harness import add_live_options, run_live  # noqa: E402
from bench_kafka_throughput import build_model, ecg_beats, published, unique_messages  # noqa: E402
from hostile_messages import Hostile, hostile_message, huge_window  # noqa: E402
from kafka_support import ScorerProcess, Topics, process_args, read_topic  # noqa: E402

from pipelines.streaming.replay import Message  # noqa: E402

from pipelines.kafka import codec  # noqa: E402
from pipelines.kafka.kafka_io import (  # noqa: E402
    create_topics,
    make_consumer,
    make_producer,
    topic_max_message_bytes,
)
from pipelines.kafka.local_broker import LocalBroker  # noqa: E402

#: an oversize value this close to the dead-letter topic's limit may go either way (whole or
#: reference), depending on its key and headers; further from it, the way is prescribed
LIMIT_MARGIN = 4096
BIG_MIN_BYTES = 1_040_000


def mixed_messages(args: argparse.Namespace, shape: tuple[int, ...]) -> tuple[list, list[Hostile]]:
    """The shuffled send list of ("good", Message) and ("bad", Hostile), and the bad ones."""
    rng = random.Random(args.seed)
    windows = ecg_beats()
    half = args.good // 2
    good = unique_messages(windows, "json", 0, half) + unique_messages(windows, "binary", half, args.good - half)
    bad = [hostile_message(rng, shape, codec.DEFAULT_MAX_MESSAGE_BYTES) for _ in range(args.bad)]
    log_lo, log_hi = math.log(BIG_MIN_BYTES), math.log(args.big_max_bytes)
    bad += [hostile_message(rng, shape, int(math.exp(rng.uniform(log_lo, log_hi))), kind="oversize")
            for _ in range(args.big)]
    bad += [hostile_message(rng, shape, 0, kind="oversize_key") for _ in range(args.long_keys)]
    good += [Message(f"huge-{n}", f"huge-{n}".encode(), huge_window(rng, shape, f"huge-{n}"), [])
             for n in range(args.huge)]
    mixed = [("good", m) for m in good] + [("bad", b) for b in bad]
    rng.shuffle(mixed)
    return mixed, bad


def produce(bootstrap: str, topic: str, mixed: list, max_request_size: int) -> tuple[dict, float]:
    """Send everything in order; {(partition, offset): (kind, message, key, headers)} from the acks."""
    producer = make_producer(bootstrap, max_request_size=max_request_size)
    futures = []
    started = time.monotonic()
    for n, (kind, message) in enumerate(mixed):
        key = message.key if kind == "good" else message.key or f"bad-{n}".encode()
        headers = list(message.headers) if kind == "good" else [*message.headers, ("fuzz-index", str(n).encode())]
        future = producer.send(topic, key=key, value=message.value, headers=headers)
        futures.append((future, kind, message, key, headers))
    producer.flush()
    producer.close()
    sent = {}
    for future, kind, message, key, headers in futures:
        meta = future.get(timeout=0)  # raises if the broker refused one: the run is void then
        sent[(meta.partition, meta.offset)] = (kind, message, key, headers)
    return sent, time.monotonic() - started


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = make_consumer(bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def check_dead_letter(record, sent: dict, dlq_limit: int) -> str | None:
    """Why `record` (a dead letter) is wrong (a good window dead-lettered included), or None."""
    try:
        source = (int(record.headers["source-partition"]), int(record.headers["source-offset"]))
    except (KeyError, ValueError):
        return "no source-partition/source-offset header"
    if source not in sent:
        return f"source {source} was never sent"
    kind, message, key, headers = sent[source]
    if kind == "good":
        return f"good window {message.id} dead-lettered: {record.headers.get('error')!r}"
    reason = record.headers.get("error", b"").split(b":")[0].decode(errors="replace")
    if reason != message.reason:
        return f"{message.kind}: reason {reason!r}, expected {message.reason!r}"
    if record.key != key and not (record.key is None and record.headers.get("original-key-sha256")
                                  == hashlib.sha256(key).hexdigest().encode()):
        return f"{message.kind}: key {record.key!r:.80}, expected {key!r:.80}"
    size = len(message.value)
    if "original-size" in record.headers:  # a reference
        if message.reason not in (codec.OVERSIZE, codec.OVERSIZE_KEY) or \
                codec.record_size_bound(key, message.value, headers) <= dlq_limit - LIMIT_MARGIN:
            return f"{message.kind}: a reference for a {size}-byte value that fits the dead-letter topic"
        if record.value or record.headers["original-size"] != str(size).encode() \
                or record.headers.get("original-sha256") != hashlib.sha256(message.value).hexdigest().encode():
            return f"{message.kind}: reference headers do not match the {size}-byte value sent"
        return None
    if size > dlq_limit:
        return f"{message.kind}: a {size}-byte value kept whole beyond the limit {dlq_limit}"
    if record.value != message.value:
        return f"{message.kind}: value differs from the one sent ({len(record.value or b'')} vs {size} bytes)"
    missing = [name for name, content in headers if record.headers.get(name) != content]
    if missing:
        return f"{message.kind}: original headers {missing} not kept"
    return None


def strict_json(value: bytes) -> bool:
    """Whether a strict parser (JavaScript's JSON.parse) reads `value`: no NaN or Infinity."""
    def refuse(constant):
        raise ValueError(constant)
    try:
        json.loads(value, parse_constant=refuse)
        return True
    except ValueError:
        return False


def run(args: argparse.Namespace, work: Path, broker: LocalBroker) -> dict:
    started = time.monotonic()
    scorer = None
    try:
        model_dir = published(build_model(work, args), work)  # with generator.onnx: served on onnx (auto)
        shape = ecg_beats().X.shape[1:]
        mixed, bad = mixed_messages(args, shape)
        largest = max(len(m.value) for _, m in mixed)
        input_limit = largest + 64 * 1024
        name = f"fuzz-{uuid.uuid4().hex[:6]}"
        topics = Topics(broker.bootstrap, f"{name}-in", f"{name}-out", f"{name}-dlq", name)
        create_topics(broker.bootstrap, [topics.input], partitions=args.partitions,
                      configs={"max.message.bytes": str(input_limit)})
        create_topics(broker.bootstrap, [topics.output, topics.dlq])  # the dead-letter topic keeps the default
        dlq_limit = topic_max_message_bytes(broker.bootstrap, topics.dlq) or codec.BROKER_DEFAULT_MAX_MESSAGE_BYTES
        scorer = ScorerProcess(process_args(topics, model_dir))
        scorer.wait_for("event=connected", timeout_s=300)
        t0 = time.monotonic()
        sent, produce_s = produce(broker.bootstrap, topics.input, mixed, max_request_size=input_limit + 64 * 1024)
        n_good = sum(1 for kind, *_ in sent.values() if kind == "good")
        print(f"sent {len(sent)} messages ({n_good} good, {len(sent) - n_good} bad, largest {largest} bytes) "
              f"in {produce_s:.1f} s", flush=True)
        deadline = time.monotonic() + args.drain_timeout_s
        while (end_offsets(broker.bootstrap, topics.output) < n_good
               or end_offsets(broker.bootstrap, topics.dlq) < len(sent) - n_good):
            if scorer.process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        drain_s = time.monotonic() - t0
        alive = scorer.process.poll() is None
        exit_code = scorer.terminate(timeout_s=120) if alive else scorer.process.returncode
        print(f"scorer {'alive' if alive else 'DEAD'} after {drain_s:.1f} s; exit status {exit_code}", flush=True)
        scores = read_topic(broker.bootstrap, topics.output, timeout_s=600)
        dead = read_topic(broker.bootstrap, topics.dlq, timeout_s=600)
    finally:
        if scorer is not None and scorer.process.poll() is None:
            scorer.kill()

    good_ids = Counter(m.id for kind, m, *_ in sent.values() if kind == "good")
    scored = Counter(record.json()["id"] for record in scores)
    not_strict = sum(1 for record in scores if not strict_json(record.value))
    huge = {record.json()["id"]: record.json() for record in scores if record.json()["id"].startswith("huge-")}
    per_source = Counter((record.headers.get("source-partition"), record.headers.get("source-offset"))
                         for record in dead)
    problems = [p for p in (check_dead_letter(record, sent, dlq_limit) for record in dead) if p]
    bad_sources = {(str(p).encode(), str(o).encode()) for (p, o), (kind, *_) in sent.items() if kind == "bad"}
    references = [r for r in dead if "original-size" in r.headers]
    big = [m for m in bad if len(m.value) > codec.DEFAULT_MAX_MESSAGE_BYTES]
    return {
        "good": len(good_ids), "bad": len(bad_sources),
        "bad_by_kind": dict(sorted(Counter(m.kind for m in bad).items())),
        "bad_over_1MB": sum(len(m.value) > 1_000_000 for m in bad),
        "bad_over_1MiB": sum(len(m.value) > 1 << 20 for m in bad),
        "largest_bytes": max(len(m.value) for m in bad) if bad else 0,
        "bad_bytes": sum(len(m.value) for m in bad), "oversize_over_scorer_limit": len(big),
        "input_max_message_bytes": input_limit, "dlq_max_message_bytes": dlq_limit,
        "scores": len(scores), "good_scored_once": sum(1 for i in good_ids if scored[i] == 1),
        "good_missing": sum(1 for i in good_ids if scored[i] == 0),
        "good_scored_twice_or_more": sum(1 for i in good_ids if scored[i] > 1),
        "unexpected_scored_ids": sorted(set(scored) - set(good_ids))[:20],
        "scores_not_strict_json": not_strict, "huge_windows": args.huge,
        "huge_scored_as_anomalies": sum(m["is_anomaly"] for m in huge.values()),
        "huge_with_non_finite_score": sum(m.get("reason") == codec.NON_FINITE_SCORE for m in huge.values()),
        "dead_letters": len(dead), "dead_lettered_references": len(references),
        "dead_lettered_whole": len(dead) - len(references),
        "bad_not_dead_lettered": len(bad_sources - set(per_source)),
        "bad_dead_lettered_twice_or_more": sum(1 for s in bad_sources if per_source[s] > 1),
        "dead_letter_problems": len(problems), "dead_letter_problem_examples": problems[:20],
        "scorer_alive_at_end": alive, "scorer_exit_on_sigterm": exit_code,
        "produce_s": round(produce_s, 1), "first_send_to_all_out_s": round(drain_s, 1),
        "total_s": round(time.monotonic() - started, 1),
        "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "served_on_onnxruntime": any("onnxruntime" in line for line in scorer.lines),
        "scorer_log_tail": scorer.lines[-5:],
    }


def passed(r: dict) -> bool:
    return (r["good_scored_once"] == r["good"] and r["good_missing"] == 0 and r["good_scored_twice_or_more"] == 0
            and r["scores_not_strict_json"] == 0 and r["huge_scored_as_anomalies"] == r["huge_windows"]
            and not r["unexpected_scored_ids"] and r["bad_not_dead_lettered"] == 0
            and r["bad_dead_lettered_twice_or_more"] == 0 and r["dead_letters"] == r["bad"]
            and r["dead_letter_problems"] == 0 and r["scorer_alive_at_end"] and r["scorer_exit_on_sigterm"] == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--good", type=int, default=10_000, help="good ECG windows (half JSON, half binary)")
    parser.add_argument("--bad", type=int, default=10_000, help="hostile messages of random kinds")
    parser.add_argument("--big", type=int, default=100, help="more oversize messages, of 1.04 MB to --big-max-bytes")
    parser.add_argument("--big-max-bytes", type=int, default=8_000_000)
    parser.add_argument("--long-keys", type=int, default=100, help="more bad messages, keyed by 257 bytes to 600 kB")
    parser.add_argument("--huge", type=int, default=100, help="more good windows whose scores overflow")
    parser.add_argument("--partitions", type=int, default=2, help="of the input topic")
    parser.add_argument("--seed", type=int, default=0)
    add_live_options(parser, "fuzz_live.json", drain_timeout_s=1800.0)
    return run_live(parser.parse_args(), "fuzz", run, passed, summary)


def summary(r: dict) -> str:
    return (f"{r['good_scored_once']} of {r['good']} good windows scored exactly once; "
            f"{r['bad'] - r['bad_not_dead_lettered']} of {r['bad']} bad messages dead-lettered "
            f"({r['dead_lettered_references']} as references), {r['dead_letter_problems']} wrong; scorer alive at "
            f"the end: {r['scorer_alive_at_end']}, exit on SIGTERM: {r['scorer_exit_on_sigterm']}")


if __name__ == "__main__":
    sys.exit(main())
