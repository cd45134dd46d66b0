"""The review queue's orders (pipelines/console/queue.py): each is a permutation of the alarms, and each puts
first what it promises; the model's latent code (AGAD.latent) the console embeds with; and the default order
is the one the benchmark's rule picks."""

import numpy as np
import pytest

from agad_stream import AGAD
from modalities.arrays import ArrayModality
from pipelines.console.explain import embed
from pipelines.console.queue import ORDERS, queue_order, threshold_distance
from pipelines.streaming.serving import ServedModel


def alarm(score, threshold=1.0, stream="a", status="pending"):
    return {"score": score, "threshold": threshold, "stream": stream, "status": status}


def test_every_order_keeps_every_alarm_once():
    rng = np.random.default_rng(0)
    alarms = [alarm(float(s), float(t), f"s{int(k)}", st) for s, t, k, st in zip(
        rng.uniform(1, 9, 60), rng.uniform(0.5, 2, 60), rng.integers(4, size=60),
        rng.choice(["pending", "confirmed", "false_alarm", "skipped", "unsure"], 60))]
    alarms[3]["score"], alarms[7]["threshold"] = None, 0.0  # what a hostile message can hold
    embeddings = rng.normal(size=(60, 5))
    embeddings[11] = np.nan  # an alarm whose values do not fit the model
    for order in ORDERS:
        ranked = queue_order(alarms, order, embeddings, rng.normal(size=(3, 5)))
        assert sorted(ranked) == list(range(60)), order


def test_newest_is_arrival_order_reversed_whatever_the_status():
    alarms = [alarm(1.5), alarm(9.0, status="confirmed"), alarm(2.0)]
    assert queue_order(alarms, "newest") == [2, 1, 0]


def test_score_puts_the_highest_first_and_reviewed_alarms_last():
    alarms = [alarm(3.0), alarm(9.0, status="confirmed"), alarm(5.0), alarm(None), alarm(4.0, status="skipped")]
    assert queue_order(alarms, "score") == [2, 4, 0, 3, 1]


def test_uncertain_measures_the_distance_relative_to_each_alarms_threshold():
    near_small, near_large, far = alarm(1.1, 1.0, "a"), alarm(5.2, 5.0, "b"), alarm(3.0, 1.0, "a")
    assert [threshold_distance(a) for a in (near_small, near_large)] == pytest.approx([0.1, 0.04])
    assert queue_order([far, near_small, near_large], "uncertain") == [2, 1, 0]  # 0.2 above 5 beats 0.1 above 1
    assert threshold_distance(alarm(2.0, 0.0)) == np.inf and threshold_distance(alarm("2", 1.0)) == np.inf


def test_diverse_asks_first_about_what_no_label_covers_and_lets_every_stream_take_a_turn():
    # stream a: three alarms near the labelled window (the origin) and two of a new kind (near 10); stream b: one
    alarms = [alarm(9.0, stream="a"), alarm(8.0, stream="a"), alarm(7.0, stream="a"),
              alarm(2.0, stream="a"), alarm(1.5, stream="a"), alarm(1.2, stream="b")]
    embeddings = np.array([[0.1, 0], [1.0, 0], [0, 0.6], [10, 0], [10.05, 0], [0, 0.3]])
    ranked = queue_order(alarms, "diverse", embeddings, labelled=np.zeros((1, 2)))
    # the new kind first, then stream b's turn; the new kind's twin is covered by the first pick: it comes last
    assert ranked == [4, 5, 1, 2, 0, 3]
    assert queue_order(alarms, "score") == [0, 1, 2, 3, 4, 5]  # score spends its first labels on the known kind


def test_diverse_without_embeddings_still_takes_streams_in_turn_by_score():
    alarms = [alarm(9.0, stream="a"), alarm(8.0, stream="a"), alarm(1.0, stream="b")]
    assert queue_order(alarms, "diverse") == [0, 2, 1]


def test_an_unknown_order_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown queue order 'oldest'; choose from newest, score, uncertain, diverse"):
        queue_order([alarm(1.0)], "oldest")


@pytest.fixture(scope="module")
def sine_model():
    """A small AGAD on noisy sine windows [N, 1, 64], and those windows."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 64)
    normal = (np.sin(2 * np.pi * 3 * t) + 0.05 * rng.normal(size=(200, 1, 64))).astype(np.float32)
    return AGAD(max_steps=40, random_state=0, verbose=False).fit(normal), normal


def test_agad_latent_is_the_generators_bottleneck_and_tells_kinds_apart(sine_model):
    model, normal = sine_model
    spikes = normal[:20].copy()
    spikes[:, :, 30:34] += 4.0
    codes = model.latent(np.concatenate([normal[:20], spikes]))
    assert codes.shape == (40, model.latent_dim_)
    within = np.linalg.norm(codes[:20, None] - codes[None, :20], axis=-1).mean()
    across = np.linalg.norm(codes[:20, None] - codes[None, 20:], axis=-1).mean()
    assert across > within
    with pytest.raises(ValueError, match="windows"):
        model.latent(normal[:, :, :32])


def test_the_console_embeds_review_values_with_the_served_model(sine_model):
    model, normal = sine_model
    served = ServedModel(model, ArrayModality(), 1, (64,))
    raws = [normal[0, 0].tolist(), [1.0, 2.0], normal[1, 0].tolist()]  # the middle one does not fit the model
    rows = embed(served, raws)
    assert np.allclose(rows[[0, 2]], model.latent(normal[:2]), atol=1e-5) and np.isnan(rows[1]).all()
    assert queue_order([alarm(2.0), alarm(1.5), alarm(1.2)], "diverse", rows, rows[[0]])[-1] == 0  # labelled: last


def test_the_consoles_default_order_is_the_one_the_benchmark_rule_picks():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import render_docs

    from pipelines.console.command import DEFAULT_QUEUE

    assert DEFAULT_QUEUE == render_docs.queue_default()
