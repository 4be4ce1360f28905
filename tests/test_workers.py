"""`hybridrec serve --workers 2`: two worker processes behind one port, each with its own
copy of the bundle, sharing the feedback log and the adaptive state."""

import os
import time

from conftest import Server


def test_two_workers_answer_and_count_every_update_once(workspace_copy, tmp_path):
    workspace_copy.drop_feedback_log()  # the test counts every pull
    # CPUs claimed among these workers alone (other tests' servers may hold some)
    workspace_copy.env["HYBRIDREC_CPU_CLAIMS"] = str(tmp_path / "claims")
    server = Server(workspace_copy, "--workers", "2", "--refresh-seconds", "0",
                    "--cpu-affinity", "auto")
    server.wait_ready()
    try:
        workers, deadline = {}, time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            status, ready = server.call("GET", "/readyz")  # a new connection each time
            if status == 200:
                workers[ready["worker"]] = ready["cpu"]
            time.sleep(0.1)
        assert len(workers) == 2, "both workers load the bundle and answer"
        if len(os.sched_getaffinity(0)) >= 2:  # each pinned to a CPU of its own
            cpus = list(workers.values())
            assert all(isinstance(c, int) for c in cpus) and len(set(cpus)) == 2, workers
            for pid, cpu in workers.items():
                assert cpus_allowed(pid) == str(cpu)
        served, rewarded = [], 0
        for n in range(40):
            status, answer = server.call("POST", "/v1/recommend",
                                         {"user_id": f"u{n + 10:05d}", "scenario": "shop",
                                          "k": 3})
            assert status == 200, answer
            if answer["decision"]["policy"] == "adaptive":
                served.append(answer)
        for answer in served[::2]:
            status, ack = server.call("POST", "/v1/feedback", {"events": [
                {"request_id": answer["request_id"],
                 "item_id": answer["items"][0]["item_id"], "event_type": "purchase"}]})
            assert status == 200 and ack["accepted"] == 1
            rewarded += 1
        status, policy = server.call("GET", "/v1/scenarios/shop/policy")
    finally:
        server.stop()
    totals = [arm["total"] for context in policy["contexts"] for arm in context["arms"]]
    assert sum(t["pulls"] for t in totals) == len(served) > 0
    assert sum(t["reward"] for t in totals) == rewarded == policy["updates"]


def cpus_allowed(pid):
    status = open(f"/proc/{pid}/status").read()
    return next(line.split()[1] for line in status.splitlines()
                if line.startswith("Cpus_allowed_list"))
