"""``hybridrec new-plugin``: each kind scaffolded, pip-installed into a fresh virtual
environment, tested with its own generated tests, listed, trained and served."""

import json
import shutil
import subprocess
import time

import pytest

from conftest import (
    BIN,
    FEAST_CLI,
    LLM_TEST_CONFIG,
    SMALL_WORLD,
    Server,
    base_env,
    empty_workspace,
    fresh_env,
    private_imports,
    run,
)


def new_plugin(env, parent, *args, check=True):
    return run([str(BIN / "hybridrec"), "new-plugin", *args, "--dir", str(parent)], env,
               check=check)


def test_names_and_folders_it_cannot_use_are_refused(tmp_path):
    env = {"PATH": "/usr/bin:/bin"}
    bad = new_plugin(env, tmp_path, "My-Plugin", check=False)
    assert bad.returncode != 0 and "plugin name 'My-Plugin' must start" in bad.stderr
    bad = new_plugin(env, tmp_path, "trailing_", check=False)  # no valid package name
    assert bad.returncode != 0 and "plugin name 'trailing_'" in bad.stderr
    bad = new_plugin(env, tmp_path, "ok", "--kind", "gadget", check=False)
    assert bad.returncode != 0 and "gadget" in bad.stderr
    taken = new_plugin(env, tmp_path, "popularity", check=False)
    assert taken.returncode != 0 and "already registered (by plugin " \
        "'hybridrec.builtin.popularity')" in taken.stderr
    new_plugin(env, tmp_path, "ok")
    again = new_plugin(env, tmp_path, "ok", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert not list(tmp_path.glob("*My-Plugin*"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A scorer and a blender scaffolded and pip-installed (not editable) into a fresh
    virtual environment."""
    root = tmp_path_factory.mktemp("scaffold")
    env = {"PATH": "/usr/bin:/bin"}
    out = new_plugin(env, root, "recency_fan").stdout
    assert "next: hybridrec install -e" in out
    new_plugin(env, root, "even_mix", "--kind", "blender")
    packages = [root / "hybridrec-recency-fan", root / "hybridrec-even-mix"]
    return fresh_env(root / "env", *packages), packages


def test_each_kind_passes_its_generated_tests_in_a_fresh_environment(installed):
    python, packages = installed
    for package in packages:
        assert private_imports(package) == [], "the scaffold uses hybridrec's public API only"
    for package in packages:
        result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                                cwd=package, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert " passed" in result.stdout and "failed" not in result.stdout
    listing = json.loads(subprocess.run(
        [str(python), "-m", "hybridrec.cli", "plugins", "--json"], capture_output=True,
        text=True, check=True).stdout)
    found = {p["name"]: p for p in listing}
    assert found["recency_fan"]["registered"] == {"scorers": ["recency_fan"]}
    assert found["even_mix"]["registered"] == {"blenders": ["even_mix"]}
    assert found["recency_fan"]["problems"] == found["even_mix"]["problems"] == []


def test_scaffolded_plugins_serve_then_uninstall_and_install_again(installed, workspace_copy):
    python, packages = installed
    config = workspace_copy.root / "scaffolded.toml"
    config.write_text(LLM_TEST_CONFIG.replace("[scenarios.shop]\n",
                                              '[scenarios.shop]\nblender = "even_mix"\n'))
    workspace_copy.env["HYBRIDREC_CONFIG"] = str(config)
    cli = [str(python), "-m", "hybridrec.cli"]
    run([*cli, "train", "--quiet", "--no-refit"], workspace_copy.env, cwd=workspace_copy.root)
    server = Server(workspace_copy, "--refresh-seconds", "0", python=python)
    try:
        server.wait_ready()
        status, answer = server.call("POST", "/v1/recommend",
                                     {"user_id": "u00001", "scenario": "shop", "k": 5})
        assert status == 200, answer
        assert all("recency_fan.click" in item["scores"] for item in answer["items"])
        assert any(item["scores"]["recency_fan.click"] is not None for item in answer["items"])
        status, policy = server.call("GET", "/v1/scenarios/shop/policy")
        assert status == 200 and policy["offline_prior"]["blender"] == "even_mix", policy

        # Uninstalled under the running server: it says what the bundle needs, and the
        # server keeps serving from memory while /readyz names the missing plugin.
        unknown = run([*cli, "uninstall", "-y", "no_such_plugin"], workspace_copy.env,
                      cwd=workspace_copy.root, check=False)
        assert unknown.returncode != 0 and "nothing named 'no_such_plugin'" in unknown.stderr
        assert "hybridrec-recency-fan (plugin recency_fan)" in unknown.stderr
        gone = run([*cli, "uninstall", "-y", "recency_fan"], workspace_copy.env,  # its name
                   cwd=workspace_copy.root)
        assert "plugin recency_fan was installed by the package hybridrec-recency-fan" \
            in gone.stdout
        assert "plugin recency_fan 0.1.0 (hybridrec-recency-fan) removed: scorers: " \
               "recency_fan" in gone.stdout
        assert "needs plugin recency_fan (its component 'recency_fan')" in gone.stderr
        assert "Retrain without it" in gone.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, ready = server.call("GET", "/readyz")
            missing = [p for p in ready["problems"] if p["state"] == "uninstalled"]
            if missing:
                break
            time.sleep(0.5)
        assert status == 200 and ready["status"] == "degraded"
        assert [p["component"] for p in missing] == ["plugin recency_fan"], ready
        status, answer = server.call("POST", "/v1/recommend",
                                     {"user_id": "u00001", "scenario": "shop", "k": 5})
        assert status == 200 and "recency_fan.click" in answer["items"][0]["scores"]

        # ... and installed again with hybridrec install: listed with what it registers
        back = run([*cli, "install", str(packages[0])],
                   {**workspace_copy.env, "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"},
                   cwd=workspace_copy.root)
        assert "plugin recency_fan 0.1.0 (hybridrec-recency-fan) added: scorers: " \
               "recency_fan" in back.stdout
        deadline = time.monotonic() + 30
        while missing and time.monotonic() < deadline:
            time.sleep(0.5)
            ready = server.call("GET", "/readyz")[1]
            missing = [p for p in ready["problems"] if p["state"] == "uninstalled"]
        assert not missing and ready["status"] == "ready", ready

        # ... and replaced by another version: the server names both until it restarts
        newer = workspace_copy.root / "hybridrec-recency-fan-0.2"
        shutil.copytree(packages[0], newer)
        pyproject = newer / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('version = "0.1.0"',
                                                           'version = "0.2.0"'))
        run([*cli, "install", str(newer)],
            {**workspace_copy.env, "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"},
            cwd=workspace_copy.root)
        deadline, replaced = time.monotonic() + 30, []
        while not replaced and time.monotonic() < deadline:
            time.sleep(0.5)
            ready = server.call("GET", "/readyz")[1]
            replaced = [p for p in ready["problems"] if p["state"] == "replaced"]
        assert [p["component"] for p in replaced] == ["plugin recency_fan"], ready
        assert replaced[0]["reason"].startswith("0.2.0 installed since this server loaded "
                                                "0.1.0; it still serves its component "), ready
    finally:
        server.stop()


def test_a_scaffolded_scenario_generates_its_data_trains_and_serves(tmp_path):
    """``--kind scenario``: installed into a fresh environment, its generated tests pass,
    ``hybridrec data synthetic`` writes its events, Feast gets its view, and the server
    answers for it."""
    env = {"PATH": "/usr/bin:/bin"}
    new_plugin(env, tmp_path, "recipes", "--kind", "scenario")
    package = tmp_path / "hybridrec-recipes"
    assert private_imports(package) == []
    python = fresh_env(tmp_path / "env", package)
    tests = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                           cwd=package, capture_output=True, text=True, env=base_env())
    assert tests.returncode == 0 and " passed" in tests.stdout, tests.stdout + tests.stderr

    ws = empty_workspace(tmp_path)
    cli = [str(python), "-m", "hybridrec.cli"]
    listing = {p["name"]: p for p in json.loads(
        run([*cli, "plugins", "--json"], ws.env).stdout)}
    assert listing["recipes"]["registered"] == {
        "scenarios": ["recipes"], "derived_tables": ["recipes_item"],
        "synthetic_scenarios": ["recipes"]}
    written = run([*cli, "data", "synthetic", *SMALL_WORLD], ws.env, cwd=tmp_path).stdout
    assert "recipes_item.parquet" in written and "recipes (" in written, written
    applied = run([str(python), "-c", FEAST_CLI, "apply"], ws.env, cwd=ws.repo).stdout
    assert "recipes_item" in applied, applied
    run([*cli, "materialize"], ws.env, cwd=tmp_path)
    run([*cli, "train", "--quiet", "--no-refit", "-s", "recipes", "--scorer", "popularity",
         "--scorer", "als"], ws.env, cwd=tmp_path)
    server = Server(ws, "--refresh-seconds", "0", python=python)
    try:
        server.wait_ready()
        status, answer = server.call("POST", "/v1/recommend",
                                     {"user_id": "u00001", "scenario": "recipes", "k": 5})
        assert status == 200 and len(answer["items"]) == 5, answer
        assert all(i["item_id"].startswith("recipes-") for i in answer["items"])
    finally:
        server.stop()
