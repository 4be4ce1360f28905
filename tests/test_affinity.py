"""Serving processes pin themselves to a CPU each (``hybridrec serve --cpu-affinity``)."""

import os
import subprocess
import sys

import pytest

from conftest import Server

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"),
                                reason="CPU affinity is Linux's")

CLAIM = """
import os, sys, threading
from hybridrec.system import pin_to_free_cpu, pinned_cpu
before = threading.Thread(target=sys.stdin.read, daemon=True)  # started before the pin
before.start()
cpu = pin_to_free_cpu()
assert pinned_cpu() == cpu and pin_to_free_cpu() is None  # once per process
after = []
threading.Thread(target=lambda: after.append(os.sched_getaffinity(0))).start()
tasks = {int(t): os.sched_getaffinity(int(t)) for t in os.listdir("/proc/self/task")}
print(cpu, sorted(set(map(frozenset, tasks.values())), key=sorted) == [frozenset({cpu})]
      if cpu is not None else None, after and after[0] == {cpu}, flush=True)
sys.stdin.read()  # holds its claim until told to end
"""


def claim(env):
    proc = subprocess.Popen([sys.executable, "-c", CLAIM], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    cpu, threads, later = proc.stdout.readline().split()
    return proc, None if cpu == "None" else int(cpu), threads, later


def test_each_process_claims_a_cpu_of_its_own_and_frees_it_when_it_ends(tmp_path):
    env = {**os.environ, "HYBRIDREC_CPU_CLAIMS": str(tmp_path / "claims")}
    cpus = sorted(os.sched_getaffinity(0))
    held = [claim(env) for _ in range(len(cpus) + 1)]
    try:
        assert [c for _, c, _, _ in held] == [*cpus, None]  # the last finds none free
        for _, _, threads, later in held[:-1]:
            assert threads == "True", "every thread, those started before the pin included"
            assert later == "True", "threads started after it too"
    finally:
        for proc, *_ in held:
            proc.communicate("")
    proc, cpu, _, _ = claim(env)  # the kernel dropped the ended processes' locks
    proc.communicate("")
    assert cpu == cpus[0]


def test_by_default_placement_is_left_to_the_system(workspace, tmp_path):
    workspace.env["HYBRIDREC_CPU_CLAIMS"] = str(tmp_path / "claims")
    try:
        server = Server(workspace, "--refresh-seconds", "0")
        server.wait_ready()
        try:
            status, ready = server.call("GET", "/readyz")
        finally:
            server.stop()
    finally:
        del workspace.env["HYBRIDREC_CPU_CLAIMS"]
    assert status == 200 and ready["cpu"] is None
    assert not (tmp_path / "claims").exists()
