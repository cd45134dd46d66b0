"""Static group membership (`score --group-instance-id`, pipelines/streaming/membership.py): slots
held by real file locks, and scorers on the real broker that never share an id by default and take
their partitions back at once after a SIGKILL."""

import re
import signal
import socket
import subprocess
import sys
import time

import pytest

pytest.register_assert_rewrite("kafka_support")

from kafka_support import messages, process_args, read_topic, scored_ids, send, until_ids  # noqa: E402
from pipelines.streaming.membership import claim_slot, instance_id, parse_slot  # noqa: E402

pytest_plugins = ["kafka_support"]  # fixtures: make_topics, ecg_windows, model_dirs, scorer_processes

#: far longer than a scorer's start: a partition back before it expires came back through static membership
LONG_SESSION_MS = 90_000


def test_each_claim_takes_the_lowest_free_slot_and_a_released_one_is_free_again(tmp_path):
    first, second = claim_slot("g", directory=tmp_path), claim_slot("g", directory=tmp_path)
    other_group = claim_slot("h", directory=tmp_path)
    assert (first.slot, second.slot, other_group.slot) == (0, 1, 0)
    assert first.instance_id == f"{socket.gethostname()}-g-0" != second.instance_id
    first.release()
    assert claim_slot("g", directory=tmp_path).slot == 0
    with pytest.raises(ValueError, match="slot 1 of group 'g' is held by another scorer"):
        claim_slot("g", slot=1, directory=tmp_path)


def test_a_killed_process_frees_its_slot(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom pipelines.streaming.membership import claim_slot\n"
        f"claim = claim_slot('g', directory=Path({str(tmp_path)!r}))\nprint(claim.slot, flush=True)\ntime.sleep(600)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        assert claim_slot("g", directory=tmp_path).slot == 1  # held by the live process
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert claim_slot("g", directory=tmp_path).slot == 0
    finally:
        holder.kill()


def test_instance_ids_fit_kafka_and_bad_slots_are_refused():
    assert len(instance_id("x" * 400, 7)) == 249 and instance_id("x" * 400, 7).endswith("x-7")
    assert parse_slot("3") == 3 and parse_slot(None) is None
    with pytest.raises(ValueError, match="whole number >= 0, got 'a'"):
        parse_slot("a")


def logged_instance_id(scorer) -> str:
    scorer.wait_for("event=connected")
    line = next(line for line in scorer.lines if "event=connected" in line)
    return re.search(r"group_instance_id=(\S+)", line).group(1)


def test_two_scorers_of_one_group_on_one_host_get_their_own_ids_and_share_the_work(
        make_topics, model_dirs, ecg_windows, scorer_processes):
    topics = make_topics(partitions=2)
    first = scorer_processes(process_args(topics, model_dirs[0], "--client-id", "scorer-a"))
    first.wait_for(f"event=partitions_assigned partitions={topics.input}")
    second = scorer_processes(process_args(topics, model_dirs[0], "--client-id", "scorer-b"))
    second.wait_for(f"event=partitions_assigned partitions={topics.input}")
    ids = logged_instance_id(first), logged_instance_id(second)
    assert ids == (f"{socket.gethostname()}-{topics.group}-0", f"{socket.gethostname()}-{topics.group}-1")
    batch = messages(ecg_windows, "binary", repeat=2)
    for n, message in enumerate(batch):
        message.key = f"stream-{n % 8}".encode()
    send(topics.bootstrap, topics.input, batch)
    scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}), timeout_s=120)
    assert {record.headers["scorer"] for record in scores} == {b"scorer-a", b"scorer-b"}  # neither was fenced
    assert first.process.poll() is None and second.process.poll() is None
    assert first.terminate() == 0 and second.terminate() == 0


def test_a_scorer_restarted_after_sigkill_takes_its_partition_back_before_the_session_expires(
        make_topics, model_dirs, ecg_windows, scorer_processes):
    topics = make_topics()
    args = process_args(topics, model_dirs[0], "--session-timeout-ms", str(LONG_SESSION_MS))
    first = scorer_processes(args)
    first.wait_for(f"event=partitions_assigned partitions={topics.input}")
    killed_id = logged_instance_id(first)
    first.kill()
    killed_at = time.monotonic()
    second = scorer_processes(args)
    batch = messages(ecg_windows, "binary")
    send(topics.bootstrap, topics.input, batch)
    scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}),
                        timeout_s=LONG_SESSION_MS / 1000 - 15)
    back_after_s = time.monotonic() - killed_at
    assert set(scored_ids(scores)) == {m.id for m in batch}, second.log()
    assert logged_instance_id(second) == killed_id
    assert back_after_s < LONG_SESSION_MS / 1000 - 15  # a dynamic member would wait out the 90 s session
    assert second.terminate() == 0


def test_an_empty_instance_id_makes_a_dynamic_member(make_topics, model_dirs, scorer_processes):
    topics = make_topics()
    scorer = scorer_processes(process_args(topics, model_dirs[0], "--group-instance-id", ""))
    scorer.wait_for(f"event=partitions_assigned partitions={topics.input}")
    assert logged_instance_id(scorer) == "none"
    assert scorer.terminate() == 0


def test_a_scorer_fenced_by_a_second_one_with_its_id_stops_with_an_error_naming_it(
        make_topics, model_dirs, ecg_windows, scorer_processes):
    topics = make_topics()
    older = scorer_processes(process_args(topics, model_dirs[0], "--group-instance-id", "shared-id"))
    older.wait_for(f"event=partitions_assigned partitions={topics.input}")
    newer = scorer_processes(process_args(topics, model_dirs[0], "--group-instance-id", "shared-id"))
    newer.wait_for(f"event=partitions_assigned partitions={topics.input}")
    batch = messages(ecg_windows, "binary")
    send(topics.bootstrap, topics.input, batch)  # the older one still fetches; its commit is refused
    assert older.process.wait(120) == 2
    assert "group instance id 'shared-id', which fenced this one" in older.log()
    scores = read_topic(topics.bootstrap, topics.output, until_ids({m.id for m in batch}), timeout_s=120)
    assert set(scored_ids(scores)) == {m.id for m in batch}
    assert newer.terminate() == 0
