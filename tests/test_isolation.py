"""A request never fails because of one plugin: breakers and time budgets in isolation, then
three pip-installed faulty scorers served under concurrent load."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import LLM_TEST_CONFIG, TEST_PLUGINS, Server, pip_install_target
from hybridrec.isolation import FEATURES, Breaker, Guard, Observer
from hybridrec.pipeline import Pipeline


class Recorded(Observer):
    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.trips: list[str] = []

    def failure(self, scenario: str, component: str, kind: str) -> None:
        self.failures.append((component, kind))

    def trip(self, scenario: str, component: str) -> None:
        self.trips.append(component)


class Batch:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class Fine:
    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        return {"click": np.arange(len(batch), dtype=float)}


class Raises:
    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        raise ValueError("bad plugin\nsecond line")


class Hangs:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        return {"click": np.zeros(len(batch))}


class Short:
    def score(self, batch: Batch) -> dict[str, np.ndarray]:
        return {"click": np.zeros(len(batch) - 1)}


def test_a_breaker_opens_after_failures_in_a_row_and_one_trial_closes_it():
    breaker = Breaker(threshold=3, cooldown=10.0)
    assert not breaker.failed(0.0) and not breaker.failed(1.0)
    breaker.succeeded()  # a success in between: the count starts again
    assert [breaker.failed(t) for t in (2.0, 3.0, 4.0)] == [False, False, True]
    assert not breaker.allow(5.0)  # open
    assert breaker.allow(14.5)  # the cooldown passed: one trial ...
    assert not breaker.allow(14.6)  # ... and only one
    assert breaker.failed(15.0)  # the trial failed: open again
    assert not breaker.allow(20.0) and breaker.allow(25.5)
    breaker.succeeded()
    assert breaker.allow(25.6) and breaker.state(25.6)["state"] == "closed"


def test_the_guard_keeps_what_answered_in_time_and_names_the_rest():
    seen = Recorded()
    guard = Guard("shop", budget_ms=200, threshold=2, cooldown=60, observer=seen)
    scorers = {"fine": Fine(), "raises": Raises(), "hangs": Hangs(3.0), "short": Short()}
    start = time.monotonic()
    outputs, left = guard.score(scorers, Batch(5), Pipeline._checked)
    assert time.monotonic() - start < 1.5  # the budget, not the hung scorer's 3 s
    assert list(outputs) == ["fine"] and outputs["fine"]["click"].tolist() == [0, 1, 2, 3, 4]
    reasons = {d.component: d.reason for d in left}
    assert reasons["scorer 'raises'"] == "raised ValueError: bad plugin"
    assert "no answer within its 200 ms budget" in reasons["scorer 'hangs'"]
    assert "shape (4,) for 5 candidates" in reasons["scorer 'short'"]
    assert sorted(seen.failures) == [("hangs", "timeout"), ("raises", "raised"),
                                     ("short", "shape")]
    outputs, left = guard.score(scorers, Batch(5), Pipeline._checked)  # second failures
    assert sorted(seen.trips) == ["hangs", "raises", "short"]
    start = time.monotonic()
    outputs, left = guard.score(scorers, Batch(5), Pipeline._checked)
    assert time.monotonic() - start < 0.1  # open breakers: not called at all
    assert list(outputs) == ["fine"]
    assert all("left out after 2 failures in a row" in d.reason for d in left)
    assert guard.state()["fine"]["state"] == "closed"
    assert guard.state()["raises"]["state"] == "open"
    guard.close()


def test_each_scorer_has_its_own_budget_and_those_after_a_late_one_still_answer():
    seen = Recorded()
    guard = Guard("shop", budget_ms=300, threshold=5, cooldown=60, observer=seen)
    # Called in turn on one thread: two scorers of 0.2 s each take more than one budget
    # together, yet each is within its own.
    scorers = {"slow1": Hangs(0.2), "slow2": Hangs(0.2), "hangs": Hangs(1.5), "fine": Fine()}
    start = time.monotonic()
    outputs, left = guard.score(scorers, Batch(4), Pipeline._checked)
    took = time.monotonic() - start
    assert sorted(outputs) == ["fine", "slow1", "slow2"]
    assert [d.component for d in left] == ["scorer 'hangs'"]
    assert 0.65 < took < 1.3  # 0.2 + 0.2 + the hung one's 0.3 budget, not its 1.5 s
    assert guard.past_budget() == {"hangs": 1}  # its call still runs on the old thread
    time.sleep(1.5)
    assert guard.past_budget() == {"hangs": 0}  # it ended, and the count with it
    assert seen.failures == [("hangs", "timeout")]
    guard.close()


def test_a_scorer_whose_calls_all_hang_is_left_out_at_once():
    guard = Guard("shop", budget_ms=50, threshold=100, cooldown=60)
    for _ in range(4):  # four calls still running fill its threads
        guard.score({"hangs": Hangs(2.0)}, Batch(3), Pipeline._checked)
    start = time.monotonic()
    _, left = guard.score({"hangs": Hangs(2.0)}, Batch(3), Pipeline._checked)
    assert time.monotonic() - start < 0.04
    assert "earlier calls are still running" in left[0].reason
    guard.close()


def test_a_failed_feature_read_gives_the_fallback_and_why():
    guard = Guard("shop", budget_ms=100, threshold=5, cooldown=60)

    def broken() -> dict[str, np.ndarray]:
        raise OSError("database disk image is malformed")

    value, why = guard.fetch(FEATURES, broken, lambda: {"missing": True})
    assert value == {"missing": True} and why is not None
    assert why.component == "online features" and "malformed" in why.reason
    value, why = guard.fetch(FEATURES, lambda: {"age": 3}, lambda: {})
    assert value == {"age": 3} and why is None
    guard.close()


# Pip-installed faulty plugins, served ----------------------------------------------------

FAULTY = ("raising", "sleepy", "misshapen")


@pytest.fixture
def faulty_server(workspace_copy, hello_site, tmp_path_factory):
    """The session workspace retrained with the faulty plugin installed, its shop scorers
    isolated with a 150 ms budget, breakers opening after 3 failures for 2 s; served, then
    switched to misbehaving."""
    site = tmp_path_factory.mktemp("faulty-site")
    pip_install_target(TEST_PLUGINS / "hybridrec-faulty", site)
    config = workspace_copy.root / "faulty.toml"
    config.write_text(LLM_TEST_CONFIG.replace(
        "[scenarios.shop]\n", "[scenarios.shop]\nscorer_budget_ms = 150\n"
        "breaker_failures = 3\nbreaker_cooldown = 2\n"))
    switch = workspace_copy.root / "faulty-on"
    workspace_copy.env.update(PYTHONPATH=f"{hello_site}:{site}", HYBRIDREC_CONFIG=str(config),
                              HYBRIDREC_FAULTY_SWITCH=str(switch))
    workspace_copy.cli("train", "--quiet", "--no-refit")
    server = Server(workspace_copy, "--refresh-seconds", "0")
    server.wait_ready()
    switch.touch()  # from now on they misbehave
    yield server, switch
    server.stop()


def _recommend(server: Server, user: int, scenario: str = "shop") -> tuple[int, dict, float]:
    start = time.monotonic()
    status, body = server.call("POST", "/v1/recommend",
                               {"user_id": f"u{user % 300:05d}", "scenario": scenario})
    return status, body, time.monotonic() - start  # type: ignore[return-value]


def test_faulty_plugins_under_load_cost_their_opinion_not_the_answer_until_they_heal(
        faulty_server):
    server, switch = faulty_server
    shop = next(s for s in server.call("GET", "/v1/scenarios")[1] if s["name"] == "shop")
    assert set(shop["scorers"]) >= set(FAULTY)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda u: _recommend(server, u), range(80)))
    assert [status for status, _, _ in answers] == [200] * 80
    assert max(seconds for _, _, seconds in answers) < 3.0  # sleepy sleeps 5 s per call
    warm = [body for _, body, _ in answers if not body["cold_start"]]
    assert len(warm) > 60
    for _, body, _ in answers:
        assert body["items"]
        left = {d["component"]: d["reason"] for d in body["degraded"]}
        # a cold start is ranked by the fallback alone, without the faulty scorers
        assert set(left) == (set() if body["cold_start"] else
                             {f"scorer {name!r}" for name in FAULTY}), left
    reasons = [d["reason"] for _, body, _ in answers for d in body["degraded"]]
    assert any(r == "raised RuntimeError: the raising plugin failed on purpose"
               for r in reasons)
    assert any("shape (" in r for r in reasons)
    assert any("150 ms budget" in r or "still running" in r for r in reasons)
    assert any(re.fullmatch(r"left out after \d+ failures in a row; tried again in \d+ s", r)
               for r in reasons)
    assert _recommend(server, 1, "video")[1]["degraded"] == []  # other scenarios untouched
    ready = server.call("GET", "/readyz")[1]
    assert ready["status"] == "degraded"
    assert {p["component"] for p in ready["problems"]} == set(FAULTY)
    metrics = server.call("GET", "/metrics")[1]
    for name in FAULTY:
        assert f'hybridrec_breaker_trips_total{{component="{name}",scenario="shop"}}' \
            in metrics
    assert f'hybridrec_degraded_answers_total{{scenario="shop"}} {len(warm)}.0' in metrics
    assert 'hybridrec_scorer_duration_seconds_count{scenario="video",scorer="als"}' in metrics
    # healed: each breaker, past its 2 s cooldown, lets one trial through, which closes it
    switch.unlink()
    deadline = time.monotonic() + 30
    body: dict = {"degraded": [None]}
    while body["degraded"] and time.monotonic() < deadline:
        time.sleep(0.5)
        status, body, _ = _recommend(server, 3)
        assert status == 200
    assert body["degraded"] == []
    assert server.call("GET", "/readyz")[1]["status"] == "ready"
