"""Review queue: which order of the alarms teaches AGAD most per label (a simulated reviewer).

Protocol (fixed before any run):
- ECG (--modality ecg): MIT-BIH, the project's ECG windows (MLII, 0.8 s beats at 180 Hz). DS1 is
  halved by patient as bench_labels_ecg.py's --split validation halves it: the stream half
  (101, 108, 112, ...) feeds the live stream, the validation half (106, 109, 114, ...) chooses
  the console's default order; DS2 is scored and reported only, never chosen on.
  Fashion-MNIST (--modality fashion-mnist, native 28x28): normal = class 0 (T-shirt/top), the
  types to find are the nine other classes. The training set's first half streams, its
  second half validates (1,000 images per class); the test set is reported only.
- base model per seed: AGAD (defaults, --max-steps) on --normal-windows normal windows of the
  stream half (ECG: stratified by record), drawn per seed. It is the registry's first
  version; those windows are its reference.
- stream: ECG: every other beat of the stream half, by time, records interleaved, one stream
  per record. Fashion-MNIST: the half's other class-0 images (1,945) and 200 anomalies (any other class)
  of the stream half in a seeded order, each from one of 4 streams at random.
  Alarms = stream windows the base model scores above its threshold.
- each order (pipelines/console/queue.py, the console's own code; "diverse" embeds with the
  base model's latent code, AGAD.latent, and starts with nothing labelled) puts the alarms
  in review order; the reviewer labels the first k (k in --budgets) with the truth: an
  anomaly is confirmed (with its type), a normal window is a false alarm.
- retrain as `agad-stream retrain --init fine-tune --epochs E` does (the demo's way): the base
  model fine-tuned (warm_start) for --retrain-epochs on its reference normals plus the false
  alarms (normal) and the confirmed anomalies (labelled). The gate is not simulated: every
  candidate is measured.
- figure: recall of each anomaly type (ECG: AAMI S, V, F; Fashion-MNIST: classes 1-9) at 1% FPR on the
  normal windows of the validation half (to choose on) and of the test set (DS2, reported
  only), k = 0 being the base model. Seeds --seeds (base fit, normals and stream draw).
- choosing: an order passes on a modality if on its validation half its recall, averaged over
  the types and the budgets, beats newest-first in every seed; of several, the larger mean
  gain. The console serves every modality, so an order becomes the default only if it passes
  on both (ECG and Fashion-MNIST); else newest stays. (benchmarks/render_docs.py applies it.)

Every (order, k, seed) result lands in --out as soon as it is done (base models in --work), so a
rerun resumes; the first seed runs every order and budget first.

usage: nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/bench_review_queue.py --modality ecg
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from common import REPO, data_path
from labels_protocol import aami_classes, load_cache, save_cache, stratified_sample
from agad_stream import AGAD
from pipelines.console.queue import ORDERS, queue_order

ECG_DS1 = ["101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
           "201", "203", "205", "207", "208", "209", "215", "220", "223", "230"]
ECG_DS2 = ["100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
           "213", "214", "219", "221", "222", "228", "231", "232", "233", "234"]
MODALITIES = {
    "ecg": {"data": "mitdb-full", "normal": "N", "types": ("S", "V", "F"), "normal_windows": 2000,
            "max_steps": 300, "retrain_epochs": 3},
    "fashion-mnist": {"data": "fashion-mnist", "normal": "0", "types": tuple(map(str, range(1, 10))),
                      "normal_windows": 1000, "max_steps": 300, "retrain_epochs": 3},
}
#: Fashion-MNIST's stream: normal images after the reference, anomalies, streams; validation images per class
IMAGE_STREAM_NORMALS, IMAGE_STREAM_ANOMALIES, IMAGE_STREAMS, IMAGE_VALIDATION_PER_CLASS = 2000, 200, 4, 1000
PARTS = ("validation", "test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", choices=MODALITIES, default="ecg")
    parser.add_argument("--data", type=Path, help="MIT-BIH (mitdb-full) or Fashion-MNIST (default under "
                                                  "$AGAD_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, help="result cache, resumed (default benchmarks/results/review_queue_MODALITY.json)")
    parser.add_argument("--work", type=Path, help="base models and windows (default .work/review_queue/MODALITY)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budgets", default="10,20,50", help="labels the reviewer gives, per run")
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--max-steps", type=int, help="base model's step budget (default 300)")
    parser.add_argument("--retrain-epochs", type=int, help="fine-tune passes (default 3, as the demo)")
    parser.add_argument("--normal-windows", type=int, help="normal windows of the base model (default: ECG 2000, "
                                                           "Fashion-MNIST 1000)")
    args = parser.parse_args(argv)
    preset = MODALITIES[args.modality]
    args.data = args.data or data_path(preset["data"])
    args.out = args.out or REPO / "benchmarks" / "results" / f"review_queue_{args.modality}.json"
    args.work = args.work or REPO / ".work" / "review_queue" / args.modality
    args.max_steps = args.max_steps or preset["max_steps"]
    args.retrain_epochs = args.retrain_epochs or preset["retrain_epochs"]
    args.normal_windows = args.normal_windows or preset["normal_windows"]
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",")]
        args.budget_list = [int(k) for k in args.budgets.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r} and --budgets {args.budgets!r} must be comma-separated integers") from None
    args.order_list = [o for o in args.orders.split(",") if o]
    unknown = sorted(set(args.order_list) - set(ORDERS))
    if unknown:
        raise SystemExit(f"--orders: unknown {', '.join(unknown)}; choose from {', '.join(ORDERS)}")
    if not args.data.exists():
        raise SystemExit(f"--data {args.data} not found: pass --data or set AGAD_DATA")
    return args


def settings(args: argparse.Namespace) -> dict:
    """What a cached result depends on; a cache written under other settings is refused."""
    preset = MODALITIES[args.modality]
    return {"modality": args.modality, "max_steps": args.max_steps, "retrain_epochs": args.retrain_epochs,
            "normal_windows": args.normal_windows, "types": list(preset["types"]), "fpr": 0.01,
            "retrain": "fine-tune (warm_start) on reference normals + false alarms + confirmed anomalies"}


# --------------------------------------------------------------------------- data
def load_ecg(args: argparse.Namespace) -> dict:
    """Prepared beats, AAMI class, record and start sample of DS1 and DS2, cached in --work."""
    from modalities.ecg import ECGModality

    cached = args.work / "windows.npz"
    if not cached.exists():
        modality = ECGModality(fs=180.0, window_s=0.8, ann="atr", leads=["MLII"])
        windows = modality.load(args.data, records=ECG_DS1 + ECG_DS2)
        args.work.mkdir(parents=True, exist_ok=True)
        np.savez(cached, X=modality.prepare(windows.X), classes=aami_classes(windows.info["symbol"]),
                 group=windows.group.astype(str), position=windows.position)
    data = dict(np.load(cached))
    stream_records, validation_records = ECG_DS1[0::2], ECG_DS1[1::2]
    data["part"] = np.select([np.isin(data["group"], stream_records), np.isin(data["group"], validation_records)],
                             ["stream", "validation"], "test")
    return data


def load_images(args: argparse.Namespace) -> dict:
    """Fashion-MNIST's training images (first half: stream, second half: 1,000 per class validate) and its
    test set, as one table with each image's class, part and (stream images) stream."""
    from modalities.image import ImageModality

    modality = ImageModality(size=None)
    train, test = modality.load(args.data, split="train"), modality.load(args.data, split="test")
    half = len(train.X) // 2
    classes = train.info["class"].astype(int)
    validation = np.concatenate([half + np.flatnonzero(classes[half:] == c)[:IMAGE_VALIDATION_PER_CLASS]
                                 for c in range(10)])
    keep = np.r_[np.arange(half), np.sort(validation)]
    n_test = len(test.X)
    return {"X": modality.prepare(np.concatenate([train.X[keep], test.X])),
            "classes": np.r_[classes[keep], test.info["class"].astype(int)].astype(str),
            "part": np.r_[np.full(half, "stream"), np.full(len(validation), "validation"), np.full(n_test, "test")],
            "group": np.full(len(keep) + n_test, ""), "position": np.r_[keep, np.arange(n_test)]}


def reference_and_stream(data: dict, args: argparse.Namespace, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(base model's normal windows, stream windows in arrival order, oldest first); sets the image
    streams' names (data["group"]) for the seed."""
    normal_class = MODALITIES[args.modality]["normal"]
    in_stream = np.flatnonzero(data["part"] == "stream")
    normal = in_stream[data["classes"][in_stream] == normal_class]
    if args.modality == "ecg":
        reference = stratified_sample(data["group"], normal, args.normal_windows, np.random.default_rng([seed, 0]))
        rest = np.setdiff1d(in_stream, reference)
        return reference, rest[np.lexsort((data["group"][rest], data["position"][rest]))]
    rng = np.random.default_rng([seed, 2])
    shuffled = rng.permutation(normal)
    reference = np.sort(shuffled[:args.normal_windows])
    anomalies = rng.permutation(in_stream[data["classes"][in_stream] != normal_class])[:IMAGE_STREAM_ANOMALIES]
    arrival = rng.permutation(np.r_[shuffled[args.normal_windows:args.normal_windows + IMAGE_STREAM_NORMALS], anomalies])
    data["group"] = np.full(len(data["X"]), "", dtype="<U16")
    data["group"][arrival] = [f"camera-{c}" for c in rng.integers(IMAGE_STREAMS, size=len(arrival))]
    return reference, arrival


# --------------------------------------------------------------------------- runs
def recall_at_fpr(scores: np.ndarray, classes: np.ndarray, normal_class: str, types, fpr: float = 0.01) -> dict:
    """Recall of each type at the score that flags `fpr` of the normal windows."""
    cut = float(np.quantile(scores[classes == normal_class], 1 - fpr, method="higher"))
    return {t: float(np.mean(scores[classes == t] > cut)) for t in types}


def evaluate(model: AGAD, data: dict, args: argparse.Namespace) -> dict:
    preset = MODALITIES[args.modality]
    result = {}
    for part in PARTS:
        mask = data["part"] == part
        result[part] = recall_at_fpr(model.score_samples(data["X"][mask]), data["classes"][mask], preset["normal"],
                                     preset["types"])
    return result


def base_model(data: dict, reference: np.ndarray, args: argparse.Namespace, seed: int) -> AGAD:
    """The seed's base model, fitted once and kept in --work."""
    path = args.work / f"base_seed{seed}_steps{args.max_steps}_n{args.normal_windows}"
    if (path / "agad.json").exists():
        return AGAD.load(path, device="cpu")
    model = AGAD(max_steps=args.max_steps, random_state=seed, device="cpu", verbose=False).fit(data["X"][reference])
    model.save(path)
    return model


def review_orders(model: AGAD, data: dict, arrival: np.ndarray, args: argparse.Namespace) -> tuple[np.ndarray, dict]:
    """The alarms (window indices, oldest first) and each order's review sequence of them."""
    scores = model.score_samples(data["X"][arrival])
    alarms = arrival[scores > model.threshold_]
    rows = [{"score": float(s), "threshold": float(model.threshold_), "stream": data["group"][i], "status": "pending"}
            for i, s in zip(alarms, scores[scores > model.threshold_])]
    latent = model.latent(data["X"][alarms]) if "diverse" in args.order_list else None
    return alarms, {order: alarms[queue_order(rows, order, latent)] for order in args.order_list}


def refit(base_path: Path, data: dict, reference: np.ndarray, picked: np.ndarray, args: argparse.Namespace,
          seed: int) -> AGAD:
    """The retrain job's fine-tune: reference normals + reviewed alarms (false alarms 0, confirmed 1)."""
    normal_class = MODALITIES[args.modality]["normal"]
    model = AGAD.load(base_path, device="cpu")
    model.set_params(warm_start=True, epochs=args.retrain_epochs, max_steps=None, verbose=False, random_state=seed)
    indices = np.concatenate([reference, picked])
    y = np.r_[np.zeros(len(reference), np.int8), (data["classes"][picked] != normal_class).astype(np.int8)]
    return model.fit(data["X"][indices], y)


def key(order: str, k: int, seed: int) -> str:
    return f"{order}|{k}|{seed}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    cache = load_cache(args.out, settings(args))
    first, *others = args.seed_list
    jobs = [(o, k, s) for seeds in ([first], others) for s in seeds for k in [0, *args.budget_list]
            for o in (["base"] if k == 0 else args.order_list)]
    todo = [j for j in jobs if key(*j) not in cache["results"]]
    if not todo:
        print(f"every run is in {args.out}")
        return
    data = load_ecg(args) if args.modality == "ecg" else load_images(args)
    bar = tqdm(todo, desc=f"review queue {args.modality}", unit="run")
    prepared: dict[int, tuple] = {}
    for order, k, seed in bar:
        bar.set_postfix_str(f"{order} k={k} seed={seed}")
        started = time.process_time()
        if seed not in prepared:
            reference, arrival = reference_and_stream(data, args, seed)
            model = base_model(data, reference, args, seed)
            alarms, queues = review_orders(model, data, arrival, args)
            prepared[seed] = (reference, model, alarms, queues)
        reference, model, alarms, queues = prepared[seed]
        if k == 0:
            result = {"order": "base", "k": 0, "seed": seed, "alarms": len(alarms),
                      "alarm_types": _counts(data["classes"][alarms]), **evaluate(model, data, args)}
        else:
            picked = queues[order][:k]
            candidate = refit(args.work / f"base_seed{seed}_steps{args.max_steps}_n{args.normal_windows}", data,
                              reference, picked, args, seed)
            result = {"order": order, "k": k, "seed": seed, "alarms": len(alarms),
                      "picked_types": _counts(data["classes"][picked]),
                      "picked_streams": len(set(data["group"][picked])), **evaluate(candidate, data, args)}
        result["cpu_s"] = round(time.process_time() - started, 1)
        cache["results"][key(order, k, seed)] = result
        save_cache(args.out, cache)
        tqdm.write(f"{order} k={k} seed={seed}: validation {_fmt(result['validation'])} test {_fmt(result['test'])} "
                   f"{result.get('picked_types', result.get('alarm_types'))} ({result['cpu_s']} CPU s)")
    print(f"results in {args.out}; table: python benchmarks/render_docs.py")


def _counts(classes: np.ndarray) -> dict:
    return {str(c): int(n) for c, n in zip(*np.unique(classes, return_counts=True))}


def _fmt(recalls: dict) -> str:
    return " ".join(f"{t} {r:.3f}" for t, r in recalls.items())


if __name__ == "__main__":
    main()
