"""The adaptive blend follows a change in what works: simulated users against a real server
first like what ALS ranks high, then what popularity does; the policy moves toward the arm
that serves them best after the switch, and serves better lists than the fixed offline
weights."""

import pytest

from conftest import Server
from hybridrec.feedback import open_feedback
from hybridrec.plugins import reset_registry
from hybridrec.simulation import Replay, Truth, active_users, drift
from hybridrec.workspace import Workspace

BEFORE, AFTER = "als.click", "popularity.click"
SEED = 7


@pytest.fixture
def with_hello(hello_site, monkeypatch):
    """The session workspace's bundle uses the hello plugin: make it loadable here too."""
    monkeypatch.syspath_prepend(str(hello_site))
    reset_registry()
    yield
    reset_registry()


def test_the_policy_moves_toward_the_scorer_that_became_informative(workspace_copy,
                                                                     with_hello):
    ws = Workspace(feature_repo=workspace_copy.repo, bundles=workspace_copy.bundles)
    workspace_copy.drop_feedback_log()  # the policy starts from its offline prior
    activity, users = active_users(ws, "video", 80)
    truth = Truth.from_workspace(ws, "video", users, [BEFORE, AFTER], top=5)
    # seeded draws, and (below) the policy re-read before every decision: the same run on
    # any machine, however fast it serves
    server = Server(workspace_copy, "--refresh-seconds", "0", "--exploration-seed", str(SEED))
    server.wait_ready()
    try:
        status, _ = server.admin("POST", "/v1/admin/scenarios/video/policy",
                                {"exploration": 0.3, "window": 300, "refresh_seconds": 0})
        assert status == 200
        log = open_feedback(ws, create=False)
        assert log is not None, "the server opened no feedback log"
        replay = Replay("127.0.0.1", server.port, log, truth, users, seed=3)
        result = drift(replay, BEFORE, AFTER, (300, 1000), activity, poll=50)
        replay.close()
        log.close()
    finally:
        server.stop()
    before, after = result["phases"]
    values = after["arm_values"]  # each arm's mean list value over the second phase
    better = {arm for arm, v in values.items() if v > values["offline"] + 0.03}
    assert after["best_arm"] in better, ("the world changed against the offline weights",
                                         values)

    def share(phase):  # of the lists served late in a phase, those by the better arms
        tail = phase["arms_last_quarter"]
        return sum(tail.get(arm, 0) for arm in better) / sum(tail.values())

    assert share(after) > share(before) + 0.2, (values, before["arms_last_quarter"],
                                                after["arms_last_quarter"])
    assert after["served"] > after["fixed"]
    assert after["regret_adaptive"] < after["regret_fixed"]
