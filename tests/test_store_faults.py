"""The online store broken or locked while serving: answers still come, marked degraded,
/readyz says so, and the server recovers by itself when the store is back."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import Server

USERS = [f"u{i:05d}" for i in range(30)]


def answers(server: Server, n: int = 30) -> list[tuple[int, dict, float]]:
    def one(i: int) -> tuple[int, dict, float]:
        start = time.monotonic()
        status, body = server.call("POST", "/v1/recommend", {
            "user_id": USERS[i % len(USERS)], "scenario": ("shop", "video", "ads")[i % 3]})
        return status, body, time.monotonic() - start  # type: ignore[return-value]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def degraded_parts(body: dict) -> set[str]:
    return {d["component"] for d in body["degraded"]}


def test_a_corrupt_online_store_degrades_answers_until_it_is_restored(workspace_copy):
    online = workspace_copy.repo / "data" / "online.db"
    saved = online.with_suffix(".saved")
    server = Server(workspace_copy, "--refresh-seconds", "0")
    server.wait_ready()
    try:
        shutil.copyfile(online, saved)
        assert all(degraded_parts(b) == set() for _, b, _ in answers(server, 6))
        online.write_bytes(online.read_bytes()[:4096])  # truncated in place
        got = answers(server)
        assert [s for s, _, _ in got] == [200] * len(got)
        assert all(b["items"] and "online features" in degraded_parts(b) for _, b, _ in got)
        ready = server.call("GET", "/readyz")
        assert ready[0] == 200 and ready[1]["status"] == "degraded"
        assert "online features" in {p["component"] for p in ready[1]["problems"]}
        shutil.copyfile(saved, online.with_suffix(".new"))
        online.with_suffix(".new").replace(online)  # restored: a new file in its place
        deadline = time.monotonic() + 30
        body: dict = {"degraded": [None]}
        while body["degraded"] and time.monotonic() < deadline:
            time.sleep(0.5)
            status, body = server.call("POST", "/v1/recommend",
                                       {"user_id": USERS[3], "scenario": "shop"})
            assert status == 200
        assert body["degraded"] == []
        assert server.call("GET", "/readyz")[1]["status"] == "ready"
    finally:
        server.stop()


def test_a_locked_online_store_costs_features_not_time(workspace_copy):
    online = workspace_copy.repo / "data" / "online.db"
    server = Server(workspace_copy, "--refresh-seconds", "0")
    server.wait_ready()
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:  # a writer holding the store's lock for up to 8 s
        with sqlite3.connect(online, timeout=1) as db:
            db.execute("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(8)
            db.rollback()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        got = answers(server, 24)
        assert [s for s, _, _ in got] == [200] * len(got)
        assert max(seconds for _, _, seconds in got) < 3.0  # not the 8 s of the lock
        assert any("online features" in degraded_parts(b) for _, b, _ in got)
    finally:
        release.set()
        holder.join()
        server.stop()
