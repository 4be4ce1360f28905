"""Off-policy estimators (hybridrec.ope) on data whose true policy value is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hybridrec import ope

#: Click probability of each of 5 actions in each of 3 slots (known to the simulation).
P_CLICK = np.array([0.02, 0.05, 0.10, 0.04, 0.08])[:, None] * np.array([1.0, 0.7, 0.5])[None, :]
#: A skewed logging policy per slot (columns sum to 1) and a different evaluation policy.
LOGGING = np.array([[0.40, 0.35, 0.30], [0.25, 0.25, 0.30], [0.05, 0.10, 0.10],
                    [0.20, 0.20, 0.20], [0.10, 0.10, 0.10]])
TARGET = np.array([[0.05, 0.05, 0.10], [0.10, 0.15, 0.10], [0.50, 0.40, 0.30],
                   [0.05, 0.10, 0.20], [0.30, 0.30, 0.30]])
SLOTS = 3


def true_value(target: np.ndarray, p_click: np.ndarray = P_CLICK) -> float:
    """The evaluation policy's expected clicks per slot (every slot equally often)."""
    return float((target * p_click).sum(axis=0).mean())


def ips_sd(target: np.ndarray, rows: int, p_click: np.ndarray = P_CLICK) -> float:
    """The exact standard deviation of IPS over ``rows`` rows (a third in each slot)."""
    w = target / LOGGING
    second = (LOGGING * w**2 * p_click).sum(axis=0)  # E[(w r)^2] per slot; r is 0 or 1
    first = (target * p_click).sum(axis=0)
    return float(np.sqrt((second - first**2).sum() * (rows / SLOTS)) / rows)


def dr_sd(target: np.ndarray, rows: int, p_click: np.ndarray) -> float:
    """The exact standard deviation of DR with the true click probabilities as its model:
    only the clicks' own noise is left, ``E[w^2 p (1 - p)]`` per slot."""
    w = target / LOGGING
    per_slot = (LOGGING * w**2 * p_click * (1 - p_click)).sum(axis=0)
    return float(np.sqrt(per_slot.sum() * (rows / SLOTS)) / rows)


def simulate(requests: int, seed: int, target: np.ndarray = TARGET,
             model: np.ndarray | None = P_CLICK, p_click: np.ndarray = P_CLICK
             ) -> ope.LoggedFeedback:
    """``requests`` requests of 3 slots, each slot's action drawn from the logging policy
    for that slot, clicked with probability ``p_click``. ``model`` is the reward model given
    to DM and DR (the true probabilities by default)."""
    rng = np.random.default_rng(seed)
    slot = np.tile(np.arange(SLOTS), requests)
    cdf = np.cumsum(LOGGING, axis=0)[:, slot]
    action = (rng.random(len(slot)) > cdf).sum(axis=0)
    reward = (rng.random(len(slot)) < p_click[action, slot]).astype(float)
    kw = {}
    if model is not None:
        kw = {"dm_logged": model[action, slot],
              "dm_target": (target * model).sum(axis=0)[slot]}
    return ope.LoggedFeedback(reward, LOGGING[action, slot], target[action, slot],
                              np.repeat(np.arange(requests), SLOTS), **kw)


def random_feedback(n: int, seed: int) -> ope.LoggedFeedback:
    rng = np.random.default_rng(seed)
    pscore = rng.uniform(0.01, 1.0, n)
    return ope.LoggedFeedback(rng.random(n) < 0.3, pscore, pscore, rng.integers(0, n // 4, n))


# Estimators on known values -----------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ips_and_snips_are_the_logged_mean_when_the_policies_agree(seed):
    data = random_feedback(500, seed)
    mean = data.reward.mean()
    assert ope.ips(data) == pytest.approx(mean, rel=1e-12)
    assert ope.snips(data) == pytest.approx(mean, rel=1e-12)
    # every bootstrap draw is the resampled mean too, for both (the draws are shared)
    draws = ope.bootstrap(data, ("ips", "snips"), n_boot=50)
    np.testing.assert_allclose(draws["ips"], draws["snips"], rtol=1e-12)


def test_estimators_recover_the_true_value_of_a_different_policy():
    """60 000 logged slots: IPS within 4 exact standard deviations of the truth, SNIPS and
    DR (lower variance) too; every 95 % interval covers the truth."""
    rows = 60_000
    data = simulate(rows // SLOTS, seed=3)
    truth, sd = true_value(TARGET), ips_sd(TARGET, rows)
    assert sd < 0.05 * truth  # the tolerance below is tight enough to mean something
    got = ope.estimate(data, n_boot=400, seed=1)
    assert set(got) == {"dm", "ips", "snips", "dr"}
    for name in ("ips", "snips", "dr"):
        assert abs(got[name].value - truth) < 4 * sd, (name, got[name], truth)
        assert got[name].lo <= truth <= got[name].hi, (name, got[name], truth)
    # the bootstrap standard error of IPS is the exact one, to within 15 %
    assert got["ips"].se == pytest.approx(sd, rel=0.15)
    # with the true click probabilities DM is exact up to the slot mix, which is fixed
    assert got["dm"].value == pytest.approx(truth, rel=1e-9)


def test_a_deterministic_evaluation_policy():
    best = np.zeros_like(TARGET)
    best[np.argmax(P_CLICK, axis=0), np.arange(SLOTS)] = 1.0  # action 2 in every slot
    rows = 60_000
    data = simulate(rows // SLOTS, seed=4, target=best)
    truth, sd = true_value(best), ips_sd(best, rows)
    got = ope.estimate(data, ("ips", "snips", "dr"), n_boot=400)
    for name, e in got.items():
        assert abs(e.value - truth) < 4 * sd and e.lo <= truth <= e.hi, (name, e, truth)


def test_dr_with_a_perfect_model_has_a_smaller_spread_than_ips():
    """With click probabilities of 0.16 to 0.8 a perfect model explains much of the
    rewards' variance: DR's exact sd is 0.6 of IPS's here. (With rare clicks the
    clicks' own noise dominates and DR gains little: sqrt(1 - p) at best.)"""
    p_click = 8 * P_CLICK
    rows = 30_000
    data = simulate(rows // SLOTS, seed=5, model=p_click, p_click=p_click)
    got = ope.estimate(data, ("ips", "dr"), n_boot=400)
    expected = dr_sd(TARGET, rows, p_click) / ips_sd(TARGET, rows, p_click)
    assert expected < 0.65
    assert got["dr"].se / got["ips"].se == pytest.approx(expected, rel=0.15)
    assert got["dr"].hi - got["dr"].lo < 0.75 * (got["ips"].hi - got["ips"].lo)
    truth = true_value(TARGET, p_click)
    assert got["dr"].lo <= truth <= got["dr"].hi


def test_dr_is_unbiased_with_a_wrong_model_where_dm_is_not():
    wrong = np.full_like(P_CLICK, 0.2)  # a constant, far above every click probability
    rows = 60_000
    data = simulate(rows // SLOTS, seed=6, model=wrong)
    truth, sd = true_value(TARGET), ips_sd(TARGET, rows)
    assert ope.dm(data) == pytest.approx(0.2)
    assert abs(ope.dr(data) - truth) < 6 * sd


def test_snips_ignores_a_common_scale_of_the_target():
    data = simulate(2000, seed=7, model=None)
    half = dataclasses.replace(data, target=data.target / 2)
    assert ope.snips(half) == pytest.approx(ope.snips(data), rel=1e-12)
    assert ope.ips(half) == pytest.approx(ope.ips(data) / 2, rel=1e-12)


def test_estimate_defaults_to_what_the_data_allows():
    without = simulate(500, seed=8, model=None)
    assert list(ope.estimate(without, n_boot=10)) == ["ips", "snips"]
    assert list(ope.estimate(simulate(500, seed=8), n_boot=10)) == ["dm", "ips", "snips", "dr"]


# The bootstrap --------------------------------------------------------------------------------
def test_intervals_cover_at_their_nominal_rate_and_have_the_right_width():
    """100 independent logs of 1500 slots: the 95 % IPS interval covers the truth in at least
    88 of them (binomial: 95 expected, sd 2.2), and its mean width is 2 * 1.96 exact sds."""
    truth, sd = true_value(TARGET), ips_sd(TARGET, 1500)
    covered, widths = 0, []
    for seed in range(100):
        e = ope.estimate(simulate(500, seed=100 + seed, model=None), ("ips",), n_boot=300,
                         seed=seed)["ips"]
        covered += e.lo <= truth <= e.hi
        widths.append(e.hi - e.lo)
    assert covered >= 88
    assert np.mean(widths) == pytest.approx(2 * 1.96 * sd, rel=0.15)


def test_the_bootstrap_resamples_whole_groups():
    """Groups of 10 rows sharing one reward: resampling groups sees sqrt(10) times the
    spread that resampling rows would."""
    rng = np.random.default_rng(9)
    per_group = (rng.random(400) < 0.3).astype(float)
    reward = np.repeat(per_group, 10)
    ones = np.ones(len(reward))
    grouped = ope.estimate(ope.LoggedFeedback(reward, ones, ones, np.repeat(np.arange(400), 10)),
                           ("ips",), n_boot=500)["ips"]
    rows = ope.estimate(ope.LoggedFeedback(reward, ones, ones, np.arange(len(reward))),
                        ("ips",), n_boot=500)["ips"]
    assert grouped.value == rows.value == pytest.approx(per_group.mean())
    assert grouped.se / rows.se == pytest.approx(np.sqrt(10), rel=0.2)


def test_group_counts_weigh_whole_groups():
    data = simulate(50, seed=10)
    counts = np.ones(data.n_groups)
    assert ope.values(data, group_counts=counts) == pytest.approx(ope.values(data))
    counts[0] = 3  # group 0 twice more: the same as appending copies of its rows
    rows = np.concatenate([np.arange(len(data)), *[np.flatnonzero(data.group_codes == 0)] * 2])
    copied = ope.LoggedFeedback(data.reward[rows], data.pscore[rows], data.target[rows],
                                data.groups[rows], data.dm_logged[rows], data.dm_target[rows])
    assert ope.values(data, group_counts=counts) == pytest.approx(ope.values(copied))
    with pytest.raises(ValueError, match="group_counts"):
        ope.values(data, group_counts=np.ones(3))


def test_the_bootstrap_is_reproducible_and_seeded():
    data = simulate(300, seed=11)
    a, b = ope.bootstrap(data, n_boot=30, seed=4), ope.bootstrap(data, n_boot=30, seed=4)
    c = ope.bootstrap(data, n_boot=30, seed=5)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a[name], c[name])


def test_resampled_group_counts_add_up():
    counts = ope.resample_groups(7, np.random.default_rng(0), n_draws=1000)
    assert counts.shape == (1000, 7) and (counts.sum(axis=1) == 7).all()
    assert counts.mean() == pytest.approx(1.0, abs=0.05)


# Effective sample size and relative error ------------------------------------------------------
def test_effective_sample_size():
    assert ope.effective_sample_size(np.full(250, 3.7)) == pytest.approx(250)
    dominated = np.r_[1000.0, np.ones(99)]
    assert ope.effective_sample_size(dominated) < 1.3
    assert ope.effective_sample_size(np.zeros(5)) == 0.0
    data = random_feedback(100, 0)  # target == pscore: every weight is 1
    assert ope.effective_sample_size(data) == pytest.approx(100)
    with pytest.raises(ValueError, match="weights"):
        ope.effective_sample_size(np.array([1.0, -1.0]))


def test_relative_error():
    assert ope.relative_error(0.6, 0.5) == pytest.approx(0.2)
    assert ope.relative_error(ope.Estimate(0.4, 0.3, 0.5), 0.5) == pytest.approx(0.2)
    np.testing.assert_allclose(ope.relative_error(np.array([0.4, 0.5, 0.75]), 0.5),
                               [0.2, 0.0, 0.5])
    np.testing.assert_allclose(ope.relative_error(np.array([1.0, 3.0]), np.array([2.0, 2.0])),
                               [0.5, 0.5])
    with pytest.raises(ValueError, match="truth"):
        ope.relative_error(0.1, 0.0)


def test_percentile_interval():
    assert ope.percentile_interval(np.arange(101.0), alpha=0.1) == pytest.approx((5.0, 95.0))
    lo, hi = ope.percentile_interval(np.array([np.nan, np.nan]))
    assert np.isnan(lo) and np.isnan(hi)


# Bad inputs ------------------------------------------------------------------------------------
GOOD = {"reward": [0.0, 1.0, 0.0], "pscore": [0.5, 0.25, 1.0], "target": [0.1, 0.0, 1.0],
        "groups": [1, 1, 2], "dm_logged": [0.1, 0.2, 0.3], "dm_target": [0.2, 0.2, 0.2]}


@pytest.mark.parametrize(("field", "value"), [
    ("pscore", [0.5, 0.0, 1.0]), ("pscore", [0.5, 1.5, 1.0]), ("pscore", [0.5, np.nan, 1.0]),
    ("pscore", [-0.1, 0.5, 0.5]),
    ("target", [0.5, -0.1, 1.0]), ("target", [0.5, 1.01, 1.0]), ("target", [np.inf, 0, 0]),
    ("reward", [0.0, np.nan, 1.0]), ("reward", [0.0, np.inf, 1.0]),
    ("pscore", [0.5, 0.5]), ("target", [0.5, 0.5, 0.5, 0.5]), ("groups", [1, 2]),
    ("dm_logged", [0.1, 0.2]), ("dm_target", [0.1, np.nan, 0.2]),
    ("reward", [[0.0, 1.0, 0.0]]), ("pscore", [["a", "b", "c"]]), ("reward", []),
])
def test_bad_inputs_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ope.LoggedFeedback(**{**GOOD, field: value})


@pytest.mark.parametrize("given", ["dm_logged", "dm_target"])
def test_model_inputs_come_in_pairs(given):
    kw = {k: v for k, v in GOOD.items() if k not in ("dm_logged", "dm_target")}
    with pytest.raises(ValueError, match="dm_logged.*dm_target|dm_target.*dm_logged"):
        ope.LoggedFeedback(**kw, **{given: GOOD[given]})


def test_good_inputs_are_accepted_as_lists():
    data = ope.LoggedFeedback(**GOOD)
    assert len(data) == 3 and data.n_groups == 2 and data.has_model
    np.testing.assert_allclose(data.weights, [0.2, 0.0, 1.0])


def test_dm_and_dr_need_a_model():
    kw = {k: v for k, v in GOOD.items() if k not in ("dm_logged", "dm_target")}
    data = ope.LoggedFeedback(**kw)
    for name, call in (("dm", ope.dm), ("dr", ope.dr)):
        with pytest.raises(ValueError, match=f"{name}.*dm_logged and dm_target"):
            call(data)
    with pytest.raises(ValueError, match="dr need"):
        ope.estimate(data, ("ips", "dr"))


def test_bad_arguments_to_estimate():
    data = ope.LoggedFeedback(**GOOD)
    with pytest.raises(ValueError, match="unknown estimator"):
        ope.estimate(data, ("ips", "magic"))
    with pytest.raises(ValueError, match="n_boot"):
        ope.estimate(data, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        ope.estimate(data, alpha=1.5)
