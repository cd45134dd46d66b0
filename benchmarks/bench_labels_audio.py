"""With labels on audio: FSDD one-vs-rest, one known digit, speaker-disjoint (the labels issue's protocol 7).

Protocol (fixed before any run), bench_labels_images.py's protocols on spoken digits:
- speakers: 2 of the 6 are test speakers, drawn as bench_fsdd.py draws them
  (modalities.split_by_group, test_fraction 1/3, --split-seed); --split validation instead
  scores 1 of the 4 training speakers and trains on the other 3, to choose on;
- windows: the project's audio modality, 8 kHz, 32 log-mel bands x 32 frames, mel bands as
  channels (1D), as bench_fsdd.py; nearly every clip gives one window (3,018 windows of
  3,000 clips);
- each digit d of --classes is one task: --normal-windows windows of d from the training
  speakers, plus k labelled windows of ONE other digit, the known digit (d + 1 + seed) mod 10,
  also from the training speakers; the eight novel digits never enter training;
- test: every clip of the test speakers; a clip's score is the mean of its windows' scores.
  AUROC of the known digit and of the pooled novel digits against d; recall at 1% FPR on
  d's test clips; recall and FPR at the detector's own threshold.
- detectors and budget: those of labels_protocol.py, with --max-steps for every AGAD variant
  and for D alone.

Every run lands in --out as soon as it is done; a rerun skips those. The report and the
label-efficiency PNG come at the end (--report-only: from the cache alone).

usage: nice env OMP_NUM_THREADS=1 python benchmarks/bench_labels_audio.py [--data DIR] [--classes 0,1] ...
"""

from __future__ import annotations

import argparse

import numpy as np

from bench_labels_images import checked, protocol_parser, run
from common import REPO, data_path
from modalities import split_by_group
from modalities.audio import AudioModality

DEFAULT_OUT = REPO / "benchmarks" / "results" / "labels_audio.json"
#: bench_fsdd.py's windows
SAMPLE_RATE, N_MELS, LAYOUT = 8000, 32, "1d"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = protocol_parser(__doc__.splitlines()[0], data_path("fsdd/recordings"),
                             "FSDD's recordings/ folder (default $AGAD_DATA/fsdd/recordings or ../shared/data/fsdd/recordings)",
                             "--normal-windows", "training windows of the normal digit (4 speakers x 50 clips: 200)",
                             200, "known,efficiency", DEFAULT_OUT)
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the test-speaker draw")
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="validation: leave the test speakers out and score 1 of the 4 training speakers")
    parser.set_defaults(gammas="0,0.05", label_counts="5,10,20,50,100")
    args = checked(parser.parse_args(argv))
    if args.out == DEFAULT_OUT and args.split == "validation":
        args.out = DEFAULT_OUT.with_name("labels_audio_validation.json")
    return args


def settings(args: argparse.Namespace) -> dict:
    """What a cached result depends on; a cache written under other settings is refused."""
    return {"data": "FSDD", "windows": f"{SAMPLE_RATE} Hz, log-mel {N_MELS} x 32, {LAYOUT}", "split": args.split,
            "split_seed": args.split_seed, "normal_images": args.normal_images, "max_steps": args.max_steps,
            "deep_sad_epochs": args.deep_sad_epochs, "known_class": "(normal digit + 1 + seed) mod 10",
            "gamma": "k / (n + k)", "score": "clip: mean of its windows"}


def load_clips(args: argparse.Namespace) -> dict:
    """Training windows of the training speakers, test windows of the test (or validation) speakers,
    and each test window's clip."""
    modality = AudioModality(sample_rate=SAMPLE_RATE, n_mels=N_MELS, layout=LAYOUT,
                             pattern="{digit}_{speaker}_{index}.wav", group_field="speaker")
    try:
        windows = modality.load(args.data)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"--data {args.data}: {error}") from None
    train, test = split_by_group(windows, test_fraction=1 / 3, random_state=args.split_seed)
    if args.split == "validation":
        train, test = split_by_group(train, test_fraction=1 / 4, random_state=args.split_seed)
    clips, item = np.unique(test.source, return_inverse=True)
    clip_digit = np.empty(len(clips), int)
    clip_digit[item] = test.info["digit"].astype(int)
    print(f"training speakers {sorted(map(str, set(train.group)))}, scored speakers {sorted(map(str, set(test.group)))}: "
          f"{len(train.X)} training windows, {len(clips)} clips ({len(test.X)} windows)", flush=True)
    return {"X": modality.prepare(train.X), "classes": train.info["digit"].astype(int),
            "X_test": modality.prepare(test.X), "classes_test": clip_digit, "item_of_test_window": item}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run(args, settings(args), load_clips)


if __name__ == "__main__":
    main()
