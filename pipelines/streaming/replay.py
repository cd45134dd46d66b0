"""`agad-stream replay`: stream a dataset's windows into a Kafka topic at a target rate.

Windows are cut by a modality exactly as for training (ECG beats or sliding windows,
audio patches, images, arrays), one raw window per message, keyed by their source
(record or file) so a stream stays ordered. The true label goes into a `label` header
when the data has one, so `agad-stream monitor` can compute a live AUROC.

Each message's `ts` is the window's recording time where replay knows it: for ECG, the
record's start from its WFDB header (base date and time, local time of the recording, which
WFDB gives without a time zone) plus the window's first sample, as an ISO string without a
zone; without a base date and time in the header, seconds from the record's start as a number.
Other modalities get the wall-clock send time (epoch seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import wfdb
from kafka import KafkaProducer
from tqdm.auto import tqdm

from modalities import Modality, Windows
from modalities.ecg import find_records
from pipelines.offline.model_dir import load_model_dir
from pipelines.offline.command import MODALITIES, add_data_options, build_modality, load_options, relabel
from pipelines.kafka import codec
from pipelines.kafka.kafka_io import make_producer, quiet_kafka_logging

ENCODINGS = ("json", "binary")


@dataclass
class Message:
    id: str
    key: bytes
    value: bytes
    headers: codec.Headers


@dataclass
class ReplayResult:
    ids: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.ids) / self.seconds if self.seconds > 0 else 0.0


def encode_message(window_id: str, stream: str, values, label: int | None, encoding: str, ts=None) -> Message:
    """One input message in the scorer's contract; `ts` (the recording time) defaults to the wall-clock
    send time (epoch seconds)."""
    ts = round(time.time(), 3) if ts is None else ts
    if encoding == "json":
        value, headers = codec.encode_json_window(window_id, values, stream=stream, ts=ts), []
    elif encoding == "binary":
        value, headers = codec.encode_binary_window(window_id, values, ts=ts)
    else:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    return Message(window_id, stream.encode(), value, headers + codec.label_header(label))


def window_messages(windows: Windows, encoding: str = "json", repeat: int = 1,
                    times: list | None = None) -> Iterator[Message]:
    """Messages for every window (ids "<source>:<position>", with "#k" for repeats k >= 1), with
    `times` as their ts when given (see recording_times), else the send time."""
    for k in range(repeat):
        suffix = f"#{k}" if k else ""
        for i in range(len(windows)):
            source = str(windows.source[i])
            label = None if windows.y is None else int(windows.y[i])
            yield encode_message(f"{source}:{int(windows.position[i])}{suffix}", source, windows.X[i], label, encoding,
                                 ts=None if times is None else times[i])


def recording_times(modality: Modality, windows: Windows, data: str | Path, records=None) -> list | None:
    """Each ECG window's recording time (see the module docstring) from the headers of the records
    under `data`; None for other modalities, whose files name no recording time."""
    if modality.name != "ecg":
        return None
    starts = {}
    for base in find_records(data, records):
        header = wfdb.rdheader(str(base))
        starts[base.name] = (dt.datetime.combine(header.base_date, header.base_time)
                             if header.base_date and header.base_time else None)
    times = []
    for source, position in zip(windows.source, windows.position):
        seconds, start = float(position) / modality.fs, starts[str(source)]
        times.append(round(seconds, 6) if start is None
                     else (start + dt.timedelta(seconds=seconds)).isoformat(timespec="milliseconds"))
    return times


def send_messages(producer: KafkaProducer, topic: str, messages: Iterable[Message], rate: float = 0.0,
                  total: int | None = None, progress: bool = True) -> ReplayResult:
    """Send at `rate` messages/s (0 = as fast as possible) and wait for the broker's acknowledgements."""
    result = ReplayResult()
    start = time.monotonic()
    with tqdm(total=total, desc=f"replay -> {topic}", unit="win", disable=not progress) as bar:
        for n, message in enumerate(messages):
            if rate > 0:
                ahead = start + n / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            producer.send(topic, key=message.key, value=message.value, headers=message.headers)
            result.ids.append(message.id)
            label = codec.header(message.headers, "label")
            if label is not None:
                result.labels[message.id] = int(label)
            bar.update(1)
        producer.flush()
    result.seconds = time.monotonic() - start
    return result


def replay_modality(args: argparse.Namespace) -> tuple[Modality, Windows]:
    """The windows to replay, cut by --model's modality (exactly as in training) or by --modality's."""
    if args.model:
        modality = relabel(load_model_dir(Path(args.model), device="cpu")[1], args)
    elif args.modality:
        modality = build_modality(args.modality, args)
    else:
        raise ValueError("give --modality or --model (whose modality settings cut the windows)")
    data = Path(args.data)
    windows = modality.load(data, **load_options(modality, data, args, "test"))
    if args.limit:
        windows = windows.subset(np.arange(min(len(windows), args.limit)))
    return modality, windows


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="stream a dataset's windows into a Kafka topic at a target rate",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--modality", choices=MODALITIES, help="how to cut windows (or take it from --model)")
    p.add_argument("--model", help="model directory: cut windows with its saved modality settings")
    p.add_argument("--data", required=True, help="record, file or directory")
    p.add_argument("--topic", required=True)
    p.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    p.add_argument("--rate", type=float, default=500.0, help="windows per second (0 = as fast as possible)")
    p.add_argument("--encoding", choices=ENCODINGS, default="json")
    p.add_argument("--limit", type=int, default=0, help="send at most this many windows (0 = all)")
    p.add_argument("--repeat", type=int, default=1, help="send the windows this many times (new ids each time)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_data_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quiet_kafka_logging()
    modality, windows = replay_modality(args)
    times = recording_times(modality, windows, args.data, args.records)
    producer = make_producer(args.bootstrap_servers)
    try:
        result = send_messages(producer, args.topic, window_messages(windows, args.encoding, args.repeat, times),
                               rate=args.rate, total=len(windows) * args.repeat, progress=not args.quiet)
    finally:
        producer.close()
    labelled = f", {sum(result.labels.values())} labelled anomalous" if result.labels else ""
    print(f"sent {len(result.ids)} windows to {args.topic} in {result.seconds:.1f} s "
          f"({result.rate:.0f}/s){labelled}")
    return 0
