"""Off-policy evaluation over logged decisions in the shape the feedback log returns them."""

import numpy as np
import pytest

from hybridrec.builtin.scenarios import ADS, SHOP
from hybridrec.offpolicy import PolicyError, evaluate_logs, parse_policy

ITEMS = [f"i{j}" for j in range(8)]


LISTS = {"offline": ["i0", "i1", "i2"], "toward:a.click": ["i0", "i3", "i4"]}


def simulate(n, probs, click, seed=0, k=3, estimates=None):
    """Logged requests: two arms with fixed lists that share their first item; an arm drawn
    with ``probs``; each shown item clicked with ``click[item]``."""
    rng = np.random.default_rng(seed)
    lists = {arm: items[:k] for arm, items in LISTS.items()}
    out = []
    for r in range(n):
        arm = "offline" if rng.random() < probs["offline"] else "toward:a.click"
        shown = lists[arm]
        positions = [sum(p for a, p in probs.items() if lists[a][j] == shown[j])
                     for j in range(k)]
        feedback = [(item, "click") for item in shown if rng.random() < click[item]]
        decision = {"policy": "adaptive", "arm": arm, "probabilities": dict(probs),
                    "positions": positions, "lists": lists, "context": {"activity": "light"}}
        if estimates is not None:
            decision["estimates"] = estimates
        out.append({"request_id": f"r{r}", "scenario": "ads", "items": shown,
                    "decision": decision, "feedback": feedback})
    return out


CLICK = {item: p for item, p in zip(ITEMS, np.linspace(0.05, 0.4, len(ITEMS)), strict=True)}
PROBS = {"offline": 0.7, "toward:a.click": 0.3}


def test_the_logging_policy_is_estimated_at_its_observed_value():
    logs = simulate(400, PROBS, CLICK)
    result = evaluate_logs(logs, {"ads": ADS}, ["logged"], n_boot=50)["ads"]["logged"]
    assert result["estimates"]["ips"].value == pytest.approx(result["logged_value"])
    assert result["estimates"]["snips"].value == pytest.approx(result["logged_value"])
    assert result["ess"] == pytest.approx(result["slots"])
    assert "dm" not in result["estimates"]  # no reward model was logged


def test_an_arm_is_estimated_near_its_true_value():
    logs = simulate(6000, PROBS, CLICK, estimates=CLICK)
    results = evaluate_logs(logs, {"ads": ADS}, ["toward:a.click", "offline"], n_boot=200)
    for arm, items in LISTS.items():
        truth = np.mean([CLICK[i] for i in items])
        for name in ("ips", "snips", "dm", "dr"):
            e = results["ads"][arm]["estimates"][name]
            assert e.lo - 0.01 <= truth <= e.hi + 0.01, (arm, name, e, truth)
    dr = results["ads"]["toward:a.click"]["estimates"]["dr"]
    ips = results["ads"]["toward:a.click"]["estimates"]["ips"]
    assert dr.hi - dr.lo < ips.hi - ips.lo  # a right reward model narrows the interval


def test_gains_follow_the_scenarios_objective():
    logs = simulate(50, PROBS, {i: 1.0 for i in ITEMS})
    for entry in logs:
        entry["scenario"] = "shop"
        entry["feedback"] = [(item, "cart") for item, _ in entry["feedback"]]
    result = evaluate_logs(logs, {"shop": SHOP}, ["logged"], n_boot=20)["shop"]["logged"]
    assert result["logged_value"] == pytest.approx(SHOP.gains["cart"])


def test_policies_that_name_unlogged_arms_skip_those_requests():
    logs = simulate(30, PROBS, CLICK)
    result = evaluate_logs(logs, {"ads": ADS}, ["toward:b.click"], n_boot=20)["ads"]
    assert result["toward:b.click"]["skipped"] == 30
    assert result["toward:b.click"]["estimates"] == {}


def test_policy_specifications():
    assert parse_policy("offline") == {"offline": 1.0}
    assert parse_policy("offline=3, toward:a.click=1") == {"offline": 0.75,
                                                           "toward:a.click": 0.25}
    for bad in ("", "offline=x", "offline=-1", "offline=0"):
        with pytest.raises(PolicyError):
            parse_policy(bad)


def test_positions_where_the_arms_agree_have_the_probability_of_both():
    logs = simulate(20, PROBS, CLICK)
    for entry in logs:
        assert entry["decision"]["positions"][0] == pytest.approx(1.0)  # i0 either way
        assert entry["decision"]["positions"][1] == PROBS[entry["decision"]["arm"]]


def test_lists_nothing_chose_count_alike_and_unseen_arms_are_reported():
    logs = simulate(200, PROBS, CLICK)
    fixed = simulate(50, {"offline": 1.0, "toward:a.click": 0.0}, CLICK, seed=1)
    for entry in fixed:  # cold starts: one fixed ranking
        shown = entry["items"]
        entry["decision"].update(probabilities={"fixed": 1.0}, arm="fixed",
                                 lists={"fixed": shown}, positions=[1.0] * len(shown))
    frozen = simulate(50, {"offline": 1.0, "toward:a.click": 0.0}, CLICK, seed=2)
    results = evaluate_logs(logs + fixed, {"ads": ADS}, ["logged", "offline"], n_boot=20)
    assert results["ads"]["logged"]["requests"] == results["ads"]["offline"]["requests"] == 250
    assert results["ads"]["offline"]["unsupported"] == 0
    frozen_only = evaluate_logs(frozen, {"ads": ADS}, ["toward:a.click"], n_boot=20)
    # the frozen log never showed toward:a's i3 and i4: two of its three positions unseen
    assert frozen_only["ads"]["toward:a.click"]["unsupported"] == pytest.approx(2 / 3)


def test_a_ranker_candidate_is_estimated_like_the_arm_it_reproduces():
    logs = simulate(500, PROBS, CLICK)
    results = evaluate_logs(logs, {"ads": ADS}, ["offline", "bundle:new"], n_boot=50,
                            rankers={"bundle:new": lambda entry: LISTS["offline"]})
    arm, ranked = results["ads"]["offline"], results["ads"]["bundle:new"]
    assert ranked["estimates"]["ips"].value == pytest.approx(arm["estimates"]["ips"].value)
    assert ranked["unsupported"] == 0
    skipping = evaluate_logs(logs, {"ads": ADS}, ["bundle:none"], n_boot=20,
                             rankers={"bundle:none": lambda entry: None})
    assert skipping["ads"]["bundle:none"]["skipped"] == 500


def test_a_scenario_whose_lists_nothing_chose_has_no_evidence_for_an_arm():
    fixed = simulate(40, {"offline": 1.0, "toward:a.click": 0.0}, CLICK)
    for entry in fixed:
        shown = entry["items"]
        entry["decision"].update(probabilities={"fixed": 1.0}, arm="fixed",
                                 lists={"fixed": shown}, positions=[1.0] * len(shown))
    result = evaluate_logs(fixed, {"ads": ADS}, ["toward:a.click", "logged"], n_boot=20)
    assert result["ads"]["toward:a.click"]["skipped"] == 40
    assert result["ads"]["toward:a.click"]["estimates"] == {}
    assert result["ads"]["logged"]["requests"] == 40
