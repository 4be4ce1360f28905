"""The adaptive blend policy: arm probabilities, their bound, the decision a pipeline logs,
and the state in the feedback log (exactly once, across restarts and processes)."""

import multiprocessing
from datetime import UTC, datetime

import numpy as np
import pytest

from hybridrec import columns as C
from hybridrec.adaptive import (
    ADAPTIVE,
    FROZEN,
    MIN_PULLS,
    OFFLINE,
    AdaptiveBlender,
    Settings,
    arm_probabilities,
    arms_for,
    posterior,
)
from hybridrec.builtin.blenders import WeightedBlender
from hybridrec.builtin.scenarios import SHOP
from hybridrec.contracts import FIXED_ARM, Ragged, ScoreBatch
from hybridrec.feedback import FeedbackLog
from hybridrec.pipeline import Decision, Scored, decisions
from hybridrec.testing import BlenderContract, tiny_training_data

NOW = datetime(2025, 3, 1, tzinfo=UTC).isoformat()


def batch_of(n_requests, n_items=20, history=0, scenario=SHOP):
    items = np.array([f"i{j}" for j in range(n_items)])
    return ScoreBatch(scenario=scenario,
                      user_ids=np.array([f"u{r}" for r in range(n_requests)], dtype=object),
                      candidates=Ragged.from_rows([items] * n_requests),
                      history=Ragged.from_rows([items[:history]] * n_requests))


def two_scorers(batch, seed=0):
    rng = np.random.default_rng(seed)
    return {"a": {"click": rng.normal(size=len(batch))},
            "b": {"click": rng.normal(size=len(batch))}}


@pytest.fixture
def log(tmp_path):
    feedback = FeedbackLog(tmp_path / "feedback.db")
    yield feedback
    feedback.close()


def adaptive(log, exploration=0.2, adapt=True, seed=0, scenario="shop"):
    return AdaptiveBlender(WeightedBlender(), scenario, "v1", log,
                           Settings(exploration=exploration, adapt=adapt), seed=seed)


# Arm probabilities ----------------------------------------------------------------------
def test_a_new_bundle_starts_from_its_offline_weights():
    probs = arm_probabilities(np.zeros(3), np.zeros(3), exploration=0.1)
    assert probs.argmax() == 0 and probs[0] >= 0.9
    assert probs.sum() == pytest.approx(1.0)
    assert arm_probabilities(np.zeros(3), np.zeros(3), 0.0).tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("exploration", [0.0, 0.05, 0.3])
def test_leaving_the_greedy_arm_never_exceeds_the_exploration_rate(exploration):
    rng = np.random.default_rng(1)
    for _ in range(200):
        pulls = rng.integers(0, 500, size=4).astype(float)
        rewards = np.floor(pulls * rng.random(4))
        probs = arm_probabilities(pulls, rewards, exploration)
        assert probs.sum() == pytest.approx(1.0) and (probs >= 0).all()
        alpha, beta = posterior(pulls, rewards)
        mean = np.where((pulls >= MIN_PULLS) | (np.arange(4) == 0), alpha / (alpha + beta),
                        -1.0)
        assert 1.0 - probs[mean.argmax()] <= exploration + 1e-12


def test_an_arm_takes_over_once_it_has_served_enough_and_earns_more():
    better = arm_probabilities(np.array([200.0, MIN_PULLS]), np.array([10.0, 12.0]), 0.1)
    assert better.argmax() == 1
    too_few = arm_probabilities(np.array([200.0, MIN_PULLS - 1]), np.array([10.0, 12.0]), 0.1)
    assert too_few.argmax() == 0


def test_arms_follow_the_scorer_outputs():
    assert arms_for(["a.click"]) == [OFFLINE]
    assert arms_for(["a.click", "b.click"]) == [OFFLINE, "toward:a.click", "toward:b.click"]


# The blender ----------------------------------------------------------------------------
class TestAdaptiveBlenderKit(BlenderContract):
    """The kit, with exploration off (so that blending is deterministic) over the state of a
    real feedback log."""

    @pytest.fixture
    def blender(self, tmp_path):
        return AdaptiveBlender(WeightedBlender(), "shop", "v1",
                               FeedbackLog(tmp_path / "kit.db"), Settings(exploration=0.0))

    @pytest.fixture
    def fitted(self, blender, world):
        blender.base.fit(world.training_data())
        return blender

    def fit_again(self, fitted, world):
        again = AdaptiveBlender(WeightedBlender(), "shop", "v1", fitted.store,
                                Settings(exploration=0.0))
        again.base.fit(world.training_data())
        return again

    @pytest.fixture
    def data(self):
        return tiny_training_data()

    def test_save_load_round_trip(self, fitted, world, tmp_path):
        with pytest.raises(TypeError, match="feedback log"):
            fitted.save(tmp_path)


def test_decisions_are_drawn_from_the_probabilities_they_report(log):
    blender = adaptive(log, exploration=0.3)
    batch = batch_of(3000)
    out = blender.decide(two_scorers(batch), batch)
    probs = out.probabilities[0]
    assert set(probs) == {OFFLINE, "toward:a.click", "toward:b.click"}
    assert all(p == probs for p in out.probabilities)  # one context: one distribution
    drawn = np.array(out.arms)
    for arm, p in probs.items():
        share = (drawn == arm).mean()
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / len(drawn)) + 1e-3, (arm, share, p)
    assert (drawn != OFFLINE).mean() <= 0.3 + 4 * np.sqrt(0.3 * 0.7 / len(drawn))
    # each request ranks by its drawn arm, whose terms add up to its score
    rows = batch.request
    expected = np.stack([out.arm_scores[a] for a in out.arms])[rows, np.arange(len(batch))]
    np.testing.assert_allclose(out.scores, expected)
    np.testing.assert_allclose(sum(out.contributions.values()), out.scores, atol=1e-12)


def test_logged_positions_match_how_often_each_item_lands_there(log):
    """The same request drawn 4000 times: the share of draws that show an item at a
    position is the probability the decision logs for it."""
    n, k = 4000, 5
    one = batch_of(1, n_items=30)
    scores = two_scorers(one, seed=4)
    batch = batch_of(n, n_items=30)
    tiled = {s: {t: np.tile(v, n) for t, v in tasks.items()} for s, tasks in scores.items()}
    blend = adaptive(log, exploration=0.6).decide(tiled, batch)
    scored = Scored(batch, np.zeros(len(batch), dtype=np.int64), tiled, blend.scores,
                    Ragged.empty(n), blend.contributions, blend)
    top = scored.top(k)
    chosen = decisions(scored, top, k)
    shown = np.array([batch.item_ids[top[r]] for r in range(n)])
    for j in range(k):
        items, counts = np.unique(shown[:, j], return_counts=True)
        share = dict(zip(items, counts / n, strict=True))
        logged = {c.lists[c.arm][j]: c.positions[j] for c in chosen}
        for item, p in logged.items():
            assert abs(share[item] - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-3, (j, item)


def test_a_cold_start_leaves_the_policys_arms_alone(log):
    blender = adaptive(log)
    batch = batch_of(2, history=7)
    blender.decide(two_scorers(batch), batch)
    arms = list(blender.arms)
    blender.decide({"a": {"click": np.zeros(len(batch))}}, batch)  # the fallback alone
    assert blender.arms == arms and len(arms) == 3


def test_an_arm_tilts_toward_its_scorer(log):
    batch = batch_of(1, n_items=50)
    scores = two_scorers(batch)
    out = adaptive(log).decide(scores, batch)
    toward_a = out.arm_scores["toward:a.click"]
    toward_b = out.arm_scores["toward:b.click"]
    a, b = scores["a"]["click"], scores["b"]["click"]
    assert np.corrcoef(toward_a, a)[0, 1] > np.corrcoef(toward_b, a)[0, 1]
    assert np.corrcoef(toward_b, b)[0, 1] > np.corrcoef(toward_a, b)[0, 1]


def test_a_frozen_scenario_serves_its_greedy_arm_alone(log):
    batch = batch_of(200)
    out = adaptive(log, exploration=0.5, adapt=False).decide(two_scorers(batch), batch)
    assert out.policy == FROZEN and set(out.arms) == {OFFLINE}
    assert all(p[OFFLINE] == 1.0 for p in out.probabilities)


def test_the_context_is_the_users_activity(log):
    blender = adaptive(log)
    for history, bucket in ((0, "cold"), (7, "light")):
        batch = batch_of(2, history=history)
        out = blender.decide(two_scorers(batch), batch)
        assert [c["activity"] for c in out.context] == [bucket, bucket]


def test_one_scorer_output_leaves_nothing_to_choose(log):
    batch = batch_of(4)
    out = adaptive(log).decide({"a": {"click": np.arange(len(batch), dtype=float)}}, batch)
    assert set(out.arms) == {FIXED_ARM} and out.policy == "weighted"
    assert all(p == {FIXED_ARM: 1.0} for p in out.probabilities)


# The state in the log ---------------------------------------------------------------------
def decision(arm="toward:a.click", activity="light", probabilities=None):
    probabilities = probabilities or {OFFLINE: 0.9, "toward:a.click": 0.05,
                                      "toward:b.click": 0.05}
    return Decision(ADAPTIVE, arm, probabilities, {"activity": activity}, [1.0, 0.5],
                    {arm: ["i1", "i2"]})


def serve(log, request_id, scenario="shop", arm="toward:a.click", activity="light",
          policy=ADAPTIVE):
    chosen = decision(arm, activity)
    chosen.policy = policy
    log.log_served(request_id, NOW, "u1", scenario, "v1", False, ["i1", "i2"], [1.0, 0.5],
                   chosen)


def event(request_id, reward, scenario="shop", item="i1", kind="purchase"):
    return {"request_id": request_id, C.USER_ID: "u1", C.ITEM_ID: item, C.SCENARIO: scenario,
            C.EVENT_TYPE: kind, C.VALUE: 1.0, C.EVENT_TIMESTAMP: NOW, "reward": reward}


def test_feedback_moves_its_scenarios_arm_and_nothing_else(log):
    serve(log, "r1")
    serve(log, "r2", scenario="video", arm=OFFLINE)
    assert log.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 0.0)}
    assert log.append([event("r1", 0.2, kind="cart")], NOW) == 1
    assert log.append([event("r1", 1.0), event("r1", 1.0)], NOW) == 1  # raised once to 1
    assert log.append([event("r1", 0.2, kind="cart")], NOW) == 0  # no lower
    assert log.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 1.0)}
    assert log.policy_counts("v1", "video") == {("light", OFFLINE): (1.0, 0.0)}
    updates, history = log.policy_history("v1", "shop")
    assert updates == 2 and [h["reward"] for h in history] == pytest.approx([0.8, 0.2])


def test_unknown_requests_and_frozen_decisions_update_nothing(log):
    serve(log, "frozen", policy=FROZEN)
    log.record_unmatched([{"request_id": "never-served", "item_id": "i1"}], NOW)
    assert log.append([event("never-served", 1.0), event("frozen", 1.0)], NOW) == 0
    assert log.policy_counts("v1", "shop") == {}
    assert log.policy_history("v1", "shop")[0] == 0
    [[count]] = log._conn.execute("SELECT COUNT(*) FROM unmatched").fetchall()
    assert count == 1


def test_the_state_survives_a_restart(tmp_path):
    first = FeedbackLog(tmp_path / "f.db")
    serve(first, "r1")
    first.append([event("r1", 1.0)], NOW)
    first.set_policy_control("shop", "v1", {"adapt": False}, NOW)
    first.close()
    again = FeedbackLog(tmp_path / "f.db")
    assert again.policy_counts("v1", "shop") == {("light", "toward:a.click"): (1.0, 1.0)}
    assert again.policy_control("shop", "v1") == {"adapt": False}
    assert again.policy_control("shop", "v2") == {}  # a new bundle starts from its config
    again.close()


def _hammer(path, worker, n):
    log = FeedbackLog(path)
    for i in range(n):
        request_id = f"w{worker}-{i}"
        serve(log, request_id, arm=OFFLINE if i % 2 else "toward:a.click")
        log.append([event(request_id, 1.0)] * 2, NOW)  # the same event twice: credited once
        if i % 3 == 0:  # feedback arriving at the other process for the other's requests
            log.append([event(f"w{1 - worker}-{i}", 0.2, kind="cart")], NOW)
    log.close()


def test_two_processes_lose_and_double_count_nothing(tmp_path):
    path = tmp_path / "shared.db"
    FeedbackLog(path).close()
    n = 150
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hammer, args=(path, w, n)) for w in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    log = FeedbackLog(path)
    counts = log.policy_counts("v1", "shop")
    pulls = sum(p for p, _ in counts.values())
    reward = sum(r for _, r in counts.values())
    assert pulls == 2 * n and reward == pytest.approx(2 * n)  # every list's best reward once
    assert counts[("light", OFFLINE)][0] == counts[("light", "toward:a.click")][0] == n
    rows = log._conn.execute("SELECT SUM(reward) FROM served").fetchone()[0]
    assert rows == pytest.approx(2 * n)
    log.close()


def test_the_blender_reads_the_state_and_follows_a_better_arm(log):
    blender = adaptive(log, exploration=0.1)
    batch = batch_of(1, history=7)
    scores = two_scorers(batch)
    first = blender.decide(scores, batch)
    assert max(first.probabilities[0], key=first.probabilities[0].get) == OFFLINE
    for i in range(MIN_PULLS + 10):  # toward:b earns on every list, offline on none
        serve(log, f"b{i}", arm="toward:b.click")
        log.append([event(f"b{i}", 1.0)], NOW)
        serve(log, f"o{i}", arm=OFFLINE)
    blender.forget()
    after = blender.decide(scores, batch).probabilities[0]
    assert max(after, key=after.get) == "toward:b.click"
    assert after["toward:b.click"] >= 0.9
    cold = blender.decide(scores, batch_of(1, history=0)).probabilities[0]
    assert max(cold, key=cold.get) == OFFLINE  # another context, untouched


def test_with_refresh_zero_every_decision_follows_every_update_before_it(log):
    """No ``forget``, no waiting: the decision after the updates is drawn from them."""
    blender = AdaptiveBlender(WeightedBlender(), "shop", "v1", log,
                              Settings(exploration=0.1, refresh_seconds=0.0), seed=0)
    batch = batch_of(1, history=7)
    scores = two_scorers(batch)
    first = blender.decide(scores, batch).probabilities[0]
    assert max(first, key=first.get) == OFFLINE
    for i in range(MIN_PULLS + 10):
        serve(log, f"b{i}", arm="toward:b.click")
        log.append([event(f"b{i}", 1.0)], NOW)
        serve(log, f"o{i}", arm=OFFLINE)
    after = blender.decide(scores, batch).probabilities[0]
    assert max(after, key=after.get) == "toward:b.click"
    cached = AdaptiveBlender(WeightedBlender(), "shop", "v1", log,
                             Settings(exploration=0.1, refresh_seconds=300.0))
    cached.decide(scores, batch)
    serve(log, "late", arm=OFFLINE)
    log.append([event("late", 1.0)], NOW)
    assert cached.decide(scores, batch).probabilities == [after]  # not re-read for 5 min


def test_with_refresh_zero_a_failed_read_serves_the_last_snapshot(log, monkeypatch, caplog):
    blender = AdaptiveBlender(WeightedBlender(), "shop", "v1", log,
                              Settings(exploration=0.1, refresh_seconds=0.0), seed=0)
    batch = batch_of(1, history=7)
    scores = two_scorers(batch)
    first = blender.decide(scores, batch).probabilities

    def broken(*args, **kwargs):
        raise OSError("disk I/O error")

    monkeypatch.setattr(log, "policy_counts", broken)
    with caplog.at_level("DEBUG", logger="hybridrec.adaptive"):
        assert [blender.decide(scores, batch).probabilities for _ in range(3)] == [first] * 3
    assert blender.failed_rereads == 3
    assert sum("failed; its previous probabilities serve" in r.message
               for r in caplog.records) == 1  # once a run
    monkeypatch.undo()
    blender.decide(scores, batch)
    assert blender.failed_rereads == 0


def test_seeded_exploration_draws_the_same_arms(log):
    batch = batch_of(200, history=7)
    scores = two_scorers(batch)
    runs = [adaptive(log, exploration=0.5, seed=seed).decide(scores, batch).arms
            for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    other = adaptive(log, exploration=0.5, seed=3, scenario="video").decide(scores, batch)
    assert other.arms != runs[0]  # each scenario draws from its own stream


@pytest.mark.parametrize("field, value", [("refresh_seconds", -1.0),
                                          ("refresh_seconds", 0.05),
                                          ("refresh_seconds", 301.0),
                                          ("window", 0), ("exploration", 1.5), ("tilt", 0.0)])
def test_settings_out_of_range_are_refused_naming_the_setting(field, value):
    with pytest.raises(ValueError, match=field):
        Settings(**{field: value})


def test_the_policy_follows_the_latest_window_of_lists(log):
    """Offline earned on its first 300 lists, then nothing; toward:b earns since. Over all
    lists offline still looks better; over the latest 200 toward:b does."""
    for i in range(300):
        serve(log, f"early{i}", arm=OFFLINE)
        log.append([event(f"early{i}", 1.0)], NOW)
    for i in range(100):
        serve(log, f"late-b{i}", arm="toward:b.click")
        if i % 2:
            log.append([event(f"late-b{i}", 1.0)], NOW)
        serve(log, f"late-o{i}", arm=OFFLINE)
    batch = batch_of(1, history=7)
    scores = two_scorers(batch)
    for window, best in ((10_000, OFFLINE), (200, "toward:b.click")):
        blender = AdaptiveBlender(WeightedBlender(), "shop", "v1", log,
                                  Settings(exploration=0.1, window=window))
        probs = blender.decide(scores, batch).probabilities[0]
        assert max(probs, key=probs.get) == best, (window, probs)
    recent = log.policy_counts("v1", "shop", window=200)
    assert recent[("light", OFFLINE)] == (100.0, 0.0)
    assert recent[("light", "toward:b.click")] == (100.0, 50.0)


def test_a_reread_begun_before_forget_does_not_cache_the_old_state(log):
    """``forget`` during a background re-read: what that re-read saw is not kept, so the
    next request reads the state as it is after ``forget``."""
    import threading

    blender = adaptive(log, exploration=0.1)
    batch = batch_of(1, history=7)
    scores = two_scorers(batch)
    blender.decide(scores, batch)  # cached
    arms = blender.arms
    reading, release = threading.Event(), threading.Event()
    counts = log.policy_counts

    def slow_counts(*args, **kwargs):
        out = counts(*args, **kwargs)  # the state before the feedback below
        reading.set()
        release.wait(10)
        return out

    log.policy_counts = slow_counts
    worker = threading.Thread(target=blender._reread_logged, args=(arms,))
    blender._refreshing.acquire()  # as probabilities() does before starting the thread
    worker.start()
    assert reading.wait(10)
    for i in range(MIN_PULLS + 10):
        serve(log, f"b{i}", arm="toward:b.click")
        log.append([event(f"b{i}", 1.0)], NOW)
        serve(log, f"o{i}", arm=OFFLINE)
    blender.forget()
    release.set()
    worker.join(10)
    log.policy_counts = counts
    after = blender.decide(scores, batch).probabilities[0]
    assert max(after, key=after.get) == "toward:b.click"


def test_failed_rereads_are_logged_once_a_run(log, caplog):
    import logging

    blender = adaptive(log, exploration=0.1)
    batch = batch_of(1, history=7)
    blender.decide(two_scorers(batch), batch)
    arms, counts = blender.arms, log.policy_counts

    def broken(*args, **kwargs):
        raise OSError("disk gone")

    log.policy_counts = broken
    with caplog.at_level(logging.DEBUG, logger="hybridrec.adaptive"):
        for _ in range(3):
            blender._refreshing.acquire()
            blender._reread_logged(arms)
        log.policy_counts = counts
        blender._refreshing.acquire()
        blender._reread_logged(arms)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert "works again after 3 failures" in caplog.text
    assert blender.failed_rereads == 0
    assert not blender._refreshing.locked()


def test_no_thread_for_a_stale_reread_keeps_serving_and_retries(log, monkeypatch):
    """When no thread can be started, the cached probabilities serve and the next request
    tries again (the re-read's lock is not left taken)."""
    import threading

    blender = adaptive(log, exploration=0.1)
    batch = batch_of(1, history=7)
    scores = two_scorers(batch)
    blender.decide(scores, batch)
    arms = blender.arms
    cached = blender.probabilities(arms)
    with blender._lock:  # make the snapshot stale
        key = tuple(arms)
        blender._cache[key] = (blender._cache[key][0] - 3600.0, blender._cache[key][1])

    def no_thread(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    assert blender.probabilities(arms) is cached
    assert not blender._refreshing.locked()
    monkeypatch.undo()
    reads = []
    counts = log.policy_counts
    log.policy_counts = lambda *a, **k: reads.append(1) or counts(*a, **k)
    blender.probabilities(arms)  # a thread this time: it re-reads
    for _ in range(200):
        if reads and not blender._refreshing.locked():
            break
        threading.Event().wait(0.05)
    assert reads and not blender._refreshing.locked()
    assert blender.probabilities(arms) is not cached  # the new snapshot
