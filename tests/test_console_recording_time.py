"""The recording time the reviewer sees: `agad-stream replay` sends each ECG beat's time in its record
as the window's ts (from the WFDB header's base date and time, else seconds from the record's start),
run as a user would, on the real broker."""

import datetime as dt
import json
import shutil
import uuid

import pytest

from kafka_support import ECG_SLICE, read_topic
from pipelines.cli import main

pytest_plugins = ["kafka_support"]
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]
FS = 360.0  # the ECG modality's default rate, the slice's own


def replayed(kafka_bootstrap: str, record) -> dict[str, object]:
    """id -> ts of the first 5 beats of `record`, replayed into a fresh topic."""
    topic = f"replay-ts-{uuid.uuid4().hex[:8]}"
    assert main(["replay", "--modality", "ecg", "--ann", "pvc", "--data", str(record), "--topic", topic,
                 "--bootstrap-servers", kafka_bootstrap, "--limit", "5", "--rate", "0", "--quiet"]) == 0
    return {m["id"]: m["ts"] for m in (json.loads(r.value) for r in read_topic(kafka_bootstrap, topic))}


def test_replay_sends_seconds_from_the_record_start_without_a_base_time(kafka_bootstrap):
    sent = replayed(kafka_bootstrap, ECG_SLICE)  # the slice's header names no base date or time
    assert len(sent) == 5
    for window_id, ts in sent.items():
        assert ts == pytest.approx(int(window_id.split(":")[1]) / FS, abs=1e-6)


def test_replay_sends_the_iso_recording_time_from_the_header(kafka_bootstrap, tmp_path):
    for part in ECG_SLICE.parent.glob("119.*"):
        shutil.copy(part, tmp_path / part.name)
    header = tmp_path / "119.hea"
    lines = header.read_text().splitlines()
    header.write_text("\n".join([lines[0] + " 23:59:59 31/12/2025", *lines[1:]]) + "\n")
    sent = replayed(kafka_bootstrap, tmp_path / "119")
    start = dt.datetime(2025, 12, 31, 23, 59, 59)  # WFDB's local time: no zone is given, none is invented
    assert sent == {i: (start + dt.timedelta(seconds=int(i.split(":")[1]) / FS)).isoformat(timespec="milliseconds")
                    for i in sent}
    assert sent["119:194"] == "2025-12-31T23:59:59.538" and sorted(sent.values())[-1].startswith("2026-01-01T00:00:0")
