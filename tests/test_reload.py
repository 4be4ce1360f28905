"""Hot reload under load, bundles refused while the old one serves, and the admin token."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import Server, http
from hybridrec.bundle import switch_current

USERS = [f"u{i:05d}" for i in range(40)]


def copy_bundle(ws, version: str, source: Path | None = None) -> Path:
    """A copy of the current bundle (or ``source``) under a new version name."""
    source = source or (ws.bundles / "current").resolve()
    target = ws.bundles / version
    staging = ws.bundles / f".{version}.tmp"  # complete before it appears, as training does
    shutil.copytree(source, staging)
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["version"] = version
    (staging / "manifest.json").write_text(json.dumps(manifest))
    staging.rename(target)
    return target


class Load:
    """Requests sent from four threads until stopped; every status kept."""

    def __init__(self, server: Server) -> None:
        self.server, self.statuses, self.versions = server, [], set()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(4)]

    def run(self, offset: int) -> None:
        i = offset
        while not self.done.is_set():
            status, body = self.server.call("POST", "/v1/recommend", {
                "user_id": USERS[i % len(USERS)], "scenario": ("shop", "video", "ads")[i % 3]})
            self.statuses.append(status)
            if status == 200:
                self.versions.add(body["bundle_version"])
            i += 4

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join()


@pytest.fixture(scope="module")
def served(module_workspace_copy):
    """One server for the module's reload tests: each leaves a good bundle current and
    served, and names its own bundles."""
    server = Server(module_workspace_copy, "--refresh-seconds", "0.5")
    server.wait_ready()
    yield module_workspace_copy, server
    server.stop()


def wait_for(check, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


def test_a_new_bundle_is_picked_up_under_load_without_a_failed_request(served):
    ws, server = served
    before = server.call("GET", "/readyz")[1]["bundle_version"]
    copy_bundle(ws, "v-automatic")
    copy_bundle(ws, "v-by-request")
    with Load(server) as load:
        time.sleep(1)
        switch_current(ws.bundles, "v-automatic")  # followed by the watcher
        assert wait_for(lambda: "v-automatic" in load.versions)
        switch_current(ws.bundles, "v-by-request")
        status, body = server.admin("POST", "/v1/admin/reload")
        assert status == 200 and body["bundle_version"] == "v-by-request"
        assert body["switched"] is True or body["bundle_version"] == "v-by-request"
        time.sleep(1)
    assert len(load.statuses) > 20
    assert set(load.statuses) == {200}
    assert {before, "v-automatic", "v-by-request"} <= load.versions
    assert server.admin("POST", "/v1/admin/reload")[1]["switched"] is False  # nothing new


def corrupt_manifest(target: Path) -> None:
    (target / "manifest.json").write_text('{"version": "v-bad", "scenarios": ')


def truncate_a_model_file(target: Path) -> None:
    model = target / "components" / "als" / "shop" / "user_factors.npy"
    model.write_bytes(model.read_bytes()[:100])


def mismatch_factor_shapes(target: Path) -> None:
    path = target / "components" / "als" / "shop" / "item_factors.npy"
    factors = np.load(path)
    np.save(path, np.hstack([factors, factors]))  # twice as wide as the user factors


def need_a_plugin_that_is_not_installed(target: Path) -> None:
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["components"][0].update(names=["gone"], plugin="gone",
                                     **{"class": "hybridrec_gone.model:GoneScorer"})
    (target / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [corrupt_manifest, truncate_a_model_file,
                                    mismatch_factor_shapes,
                                    need_a_plugin_that_is_not_installed])
def test_a_broken_bundle_is_refused_and_the_old_one_keeps_serving(served, damage):
    ws, server = served
    before = server.call("GET", "/readyz")[1]["bundle_version"]
    good = (ws.bundles / "current").resolve()
    broken = f"v-{damage.__name__}"
    target = copy_bundle(ws, broken)
    damage(target)
    with Load(server) as load:
        switch_current(ws.bundles, broken)
        status, body = server.admin("POST", "/v1/admin/reload")
        assert status == 409, body
        assert f"{broken} refused" in body["detail"] and body["bundle_version"] == before
        assert str(ws.root) not in body["detail"]  # no file system paths for clients
        # the watcher tries it too, refuses it, and does not retry the same files
        ready = server.call("GET", "/readyz")
        assert ready[0] == 200 and ready[1]["status"] == "degraded"
        refused = [p for p in ready[1]["problems"] if p["component"] == "bundle"]
        assert refused and f"{broken} refused" in refused[0]["reason"]
        assert "hybridrec_bundle_refused 1.0" in server.call("GET", "/metrics")[1]
        time.sleep(1.5)
    assert set(load.statuses) == {200} and load.versions == {before}
    log = server.log.read_text()
    assert log.count(f"{broken} refused") <= 2  # by request, and once by the watcher
    # repaired: the next one is served
    shutil.rmtree(target)
    copy_bundle(ws, broken, good)
    assert wait_for(lambda: server.call("GET", "/readyz")[1]["bundle_version"] == broken)
    assert "hybridrec_bundle_refused 0.0" in server.call("GET", "/metrics")[1]


def test_admin_endpoints_need_the_token(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        status, body = http(server.base, "POST", "/v1/admin/reload", headers=headers)
        assert status == 401 and "HYBRIDREC_ADMIN_TOKEN" in body["detail"]
        status, _ = http(server.base, "POST", "/v1/admin/scenarios/shop/policy",
                         {"adapt": False}, headers=headers)
        assert status == 401
    assert server.admin("POST", "/v1/admin/reload")[0] == 200


def test_without_a_token_admin_endpoints_are_off(workspace):
    from dataclasses import replace

    env = {k: v for k, v in workspace.env.items() if k != "HYBRIDREC_ADMIN_TOKEN"}
    server = Server(replace(workspace, env=env), "--refresh-seconds", "0")
    try:
        server.wait_ready()
        status, body = server.admin("POST", "/v1/admin/reload")
        assert status == 401 and "admin endpoints are off" in body["detail"]
    finally:
        server.stop()


def test_pruning_keeps_the_newest_bundles_by_creation_not_by_name(tmp_path):
    from hybridrec.bundle import prune

    made = {"zz-oldest": "2025-01-01T00:00:00+00:00", "aa-newest": "2025-03-01T00:00:00+00:00",
            "mm-rollback": "2025-02-01T00:00:00+00:00", "broken": None}
    for name, created in made.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(
            "{not json" if created is None else json.dumps({"created_at": created}))
    switch_current(tmp_path, "aa-newest")
    assert sorted(prune(tmp_path, 2)) == ["broken", "zz-oldest"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aa-newest", "current", "mm-rollback"]
    switch_current(tmp_path, "mm-rollback")  # rolled back: the current one always stays
    assert prune(tmp_path, 1) == []
    assert (tmp_path / "mm-rollback").is_dir() and (tmp_path / "aa-newest").is_dir()
