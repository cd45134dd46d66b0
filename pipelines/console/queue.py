"""The review queue's orders: which alarm a reviewer sees first (pure: lists and arrays in, positions out).

Reviewers' time is what the learning loop is short of, so the console can put first the alarms
whose label should teach the model most. Every order is a permutation: it ranks alarms, it never
drops one.

- newest: arrival order, newest first (what the console always showed).
- score: highest score first (the model's surest alarms).
- uncertain: nearest the threshold first, by |score - threshold| / threshold (each alarm carries the
  threshold it was judged by; thresholds differ between streams and model versions).
- diverse: alarms unlike every labelled window first. Distances are Euclidean in an embedding (the
  model's latent code, see AGAD.latent); each pick counts as covered for the picks after it
  (farthest-point order), and streams take turns (round-robin), so one stream's burst cannot fill
  the first page.

Except for newest, alarms still to review (pending, skipped, unsure) come first in the order and the
reviewed ones after them, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ORDERS = ("newest", "score", "uncertain", "diverse")
#: the console's order unless --queue or the page asks for another, measured on validation data (docs/console.md)
DEFAULT_QUEUE = "newest"
REVIEWED = ("confirmed", "false_alarm")
DESCRIPTIONS = {
    "newest": "newest first",
    "score": "highest score first",
    "uncertain": "nearest the threshold first (|score - threshold| / threshold)",
    "diverse": "least like any labelled window first (model latent), streams taking turns",
}


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"unknown queue order {order!r}; choose from {', '.join(ORDERS)}")
    return order


def queue_order(alarms: Sequence[dict], order: str, embeddings: np.ndarray | None = None,
                labelled: np.ndarray | None = None) -> list[int]:
    """Positions of `alarms` (oldest first, as they arrived) in review order.

    Alarms are dicts with "score", "threshold", "stream" and "status". For "diverse",
    `embeddings` holds one row per alarm (a row of NaN: no embedding, treated as unlike
    everything) and `labelled` the embeddings of windows already labelled (none: nothing
    covered yet); without `embeddings` every alarm counts as unlike every other.
    """
    check_order(order)
    newest = list(range(len(alarms)))[::-1]
    if order == "newest":
        return newest
    open_ = [i for i in newest if alarms[i].get("status") not in REVIEWED]
    reviewed = [i for i in newest if alarms[i].get("status") in REVIEWED]
    if order == "score":
        ranked = sorted(open_, key=lambda i: -_number(alarms[i].get("score"), -np.inf))
    elif order == "uncertain":
        ranked = sorted(open_, key=lambda i: threshold_distance(alarms[i]))
    else:
        ranked = diverse_order(alarms, open_, embeddings, labelled)
    return ranked + reviewed


def threshold_distance(alarm: dict) -> float:
    """|score - threshold| / threshold; infinite (last) without a usable score or a positive threshold."""
    score, threshold = _number(alarm.get("score"), np.nan), _number(alarm.get("threshold"), np.nan)
    if not np.isfinite(score) or not np.isfinite(threshold) or threshold <= 0:
        return np.inf
    return abs(score - threshold) / threshold


def diverse_order(alarms: Sequence[dict], candidates: list[int], embeddings: np.ndarray | None,
                  labelled: np.ndarray | None) -> list[int]:
    """Farthest-point order over `candidates`, one pick per stream per round.

    Each round visits the streams by the distance of their farthest candidate (then by name)
    and takes that candidate; ties go to the higher score, then the newer alarm."""
    if not candidates:
        return []
    distance = np.full(len(alarms), np.inf)
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float64).reshape(len(alarms), -1)
        if labelled is not None and len(labelled):
            distance = _nearest(embeddings, np.asarray(labelled, dtype=np.float64).reshape(len(labelled), -1))
    score = np.array([_number(a.get("score"), -np.inf) for a in alarms])
    by_stream: dict[str, list[int]] = {}
    for i in candidates:
        by_stream.setdefault(str(alarms[i].get("stream")), []).append(i)
    open_by_stream = {stream: np.array(members) for stream, members in by_stream.items()}

    def best(members: np.ndarray) -> int:
        farthest = members[distance[members] == distance[members].max()]
        return int(farthest[np.lexsort((farthest, score[farthest]))[-1]])  # then higher score, then newer

    ranked: list[int] = []
    while open_by_stream:
        heads = {stream: best(members) for stream, members in open_by_stream.items()}
        for stream in sorted(heads, key=lambda s: (-distance[heads[s]], s)):
            pick = best(open_by_stream[stream])  # earlier picks of this round may have covered the first choice
            ranked.append(pick)
            open_by_stream[stream] = open_by_stream[stream][open_by_stream[stream] != pick]
            if not len(open_by_stream[stream]):
                del open_by_stream[stream]
            if embeddings is not None and np.all(np.isfinite(embeddings[pick])):
                distance = np.minimum(distance, _nearest(embeddings, embeddings[pick][None]))
    return ranked


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each point's Euclidean distance to its nearest centre; NaN rows (no embedding) stay infinitely far."""
    squared = (np.square(points).sum(1)[:, None] - 2 * points @ centres.T + np.square(centres).sum(1)[None]).min(1)
    return np.where(np.isnan(squared), np.inf, np.sqrt(np.maximum(squared, 0.0)))


def _number(value, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
