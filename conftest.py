"""Shared fixtures for tests/ and every plugin's tests: real pip installs of the test plugins,
a real Feast workspace, a real server.

Everything heavy is session-scoped and built once: a small synthetic world in a temporary
copy of ``feature_repo/``, ``feast apply`` and materialisation through the real CLIs, a trained
bundle, and ``hybridrec serve`` as a subprocess on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ML100K = SHARED_DATA / "ml-100k"
TEST_PLUGINS = ROOT / "tests" / "plugins"

#: hybridrec-llm in the session workspace: the default encoder (all-MiniLM-L6-v2), a small
#: network and few epochs, because the suite trains that workspace many times.
LLM_TEST_CONFIG = """[llm]
dim = 32
hidden = 64
history_length = 20
epochs = 4
patience = 2

# The shared server serves each scenario's best arm only, so that its answers can be
# compared with the CLI's; tests of exploration turn it on for their own server.
[scenarios.shop]
exploration = 0.0
[scenarios.video]
exploration = 0.0
[scenarios.ads]
exploration = 0.0
"""

#: The admin token every test server is started with (``Server.admin`` sends it).
ADMIN_TOKEN = "test-admin-token"

SMALL_WORLD = ["--users", "300", "--items", "120", "--ads", "30", "--events", "20000",
               "--ad-traffic", "0.2", "--weeks", "4", "--seed", "7", "--end",
               "2025-03-31T00:00:00Z"]


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def pip_install_target(package: Path, target: Path) -> None:
    """``pip install`` a plugin package into ``target`` (a directory put on PYTHONPATH)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(package)],
                   check=True, capture_output=True, text=True, timeout=300)


def fresh_env(path: Path, *packages: Path) -> Path:
    """A new virtual environment that sees hybridrec's installed packages (a .pth line adds
    their site directory), so installing a plugin there downloads nothing; ``packages`` are
    pip-installed into it (not editable). Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    base = sysconfig.get_paths()["purelib"]
    (path / "lib").joinpath(site.split("/lib/", 1)[1], "hybridrec-base.pth").write_text(
        f"import site; site.addsitedir({base!r})\n")
    if packages:
        subprocess.run([str(python), "-m", "pip", "install", "--no-deps",
                        "--no-build-isolation", "--no-index", "--quiet", *map(str, packages)],
                       check=True)
    return python


#: What a plugin may import from hybridrec: the package's exports and the kit.
PUBLIC_MODULES = {"hybridrec", "hybridrec.testing"}


def private_imports(package: Path) -> list[str]:
    """Imports of ``package``'s Python files that reach past hybridrec's public API."""
    import ast

    out = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if module == "hybridrec" or module.startswith("hybridrec."):
                names = [a.name for a in node.names]
                if node.module not in PUBLIC_MODULES or any(n.startswith("_") for n in names):
                    out.append(f"{path.name}: from {node.module} import {', '.join(names)}")
            elif isinstance(node, ast.Import):
                out += [f"{path.name}: import {a.name}" for a in node.names
                        if a.name.startswith("hybridrec.") and a.name not in PUBLIC_MODULES]
    return out


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HYBRIDREC_") and k not in ("PYTHONPATH", "FEAST_FS_YAML_FILE_PATH")}
    env["FEAST_USAGE"] = "False"
    env["HYBRIDREC_ADMIN_TOKEN"] = ADMIN_TOKEN
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def hello_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's example plugin, pip-installed into its own site directory."""
    target = tmp_path_factory.mktemp("hello-site")
    pip_install_target(TEST_PLUGINS / "hybridrec-hello", target)
    return target


@pytest.fixture(scope="session")
def eras_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plugins made for other plugin API versions (``tests/plugins/hybridrec-eras``)."""
    target = tmp_path_factory.mktemp("eras-site")
    pip_install_target(TEST_PLUGINS / "hybridrec-eras", target)
    return target


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("broken-site")
    pip_install_target(TEST_PLUGINS / "hybridrec-broken", target)
    return target


def copy_feature_repo(dest: Path) -> Path:
    repo = dest / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
    return repo


#: ``feast`` from another environment's python: ``[python, "-c", FEAST_CLI, "apply"]``.
FEAST_CLI = "import sys; from feast.cli.cli import cli; sys.exit(cli())"


def empty_workspace(root: Path, **env: str) -> Workspace:
    """A copy of the feature repository without data, and a bundle folder, under ``root``."""
    repo = copy_feature_repo(root)
    return Workspace(root, repo, root / "bundles",
                     base_env(HYBRIDREC_FEATURE_REPO=str(repo),
                              HYBRIDREC_BUNDLES=str(root / "bundles"), **env))


@dataclass
class Workspace:
    root: Path
    repo: Path
    bundles: Path
    env: dict[str, str]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([str(BIN / "hybridrec"), *args], self.env, cwd=self.root, check=check)

    def drop_feedback_log(self) -> None:
        """Delete the SQLite feedback log, for a test that counts every served list or
        update: a copy carries what other tests served from the session workspace."""
        for path in (self.repo / "data").glob("feedback.db*"):
            path.unlink()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, hello_site: Path) -> Workspace:
    """A small synthetic world, applied, materialised and trained, with the hello plugin."""
    root = tmp_path_factory.mktemp("workspace")
    repo = copy_feature_repo(root)
    env = base_env(PYTHONPATH=str(hello_site), HYBRIDREC_FEATURE_REPO=str(repo),
                   HYBRIDREC_BUNDLES=str(root / "bundles"))
    if importlib.util.find_spec("hybridrec_llm") is not None:
        # the real default encoder, a small network: the suite trains many times
        config = root / "hybridrec.toml"
        config.write_text(LLM_TEST_CONFIG)
        env["HYBRIDREC_CONFIG"] = str(config)
    ws = Workspace(root, repo, root / "bundles", env)
    ws.cli("data", "synthetic", *SMALL_WORLD)
    run([str(BIN / "feast"), "apply"], env, cwd=repo)
    ws.cli("materialize")
    ws.cli("train", "--quiet")
    return ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(base: str, method: str, path: str, body: object = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, object]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            status = response.status
            kind = response.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        payload, status, kind = exc.read(), exc.code, exc.headers.get("content-type", "")
    return status, (json.loads(payload) if "json" in kind else payload.decode())


class Server:
    """``hybridrec serve`` on a free loopback port. With ``modules``, the server process
    keeps writing the names of every module it has imported into that file; with
    ``python``, it is that interpreter's hybridrec (another environment's)."""

    def __init__(self, ws: Workspace, *args: str, modules: Path | None = None,
                 python: Path | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = ws.root / f"server-{self.port}.log"
        command = [str(BIN / "hybridrec")] if python is None else \
            [str(python), "-m", "hybridrec.cli"]
        if modules is not None:  # uvicorn ends on the signal itself, so no atexit: a thread
            command = [sys.executable, "-c",
                       "import json, sys, threading, time\n"
                       "def dump():\n"
                       "    while True:\n"
                       f"        open({str(modules)!r} + '.tmp', 'w').write("
                       "json.dumps(sorted(sys.modules)))\n"
                       "        __import__('os').replace("
                       f"{str(modules)!r} + '.tmp', {str(modules)!r})\n"
                       "        time.sleep(0.2)\n"
                       "threading.Thread(target=dump, daemon=True).start()\n"
                       "from hybridrec.cli import main\n"
                       "main(sys.argv[1:])\n"]
        self.proc = subprocess.Popen(
            [*command, "serve", "--port", str(self.port), *args],
            env=ws.env, cwd=ws.root, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if http(self.base, "GET", "/readyz")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"server not ready in {timeout}s: {self.log.read_text()}")

    def call(self, method: str, path: str, body: object = None, **kw: object) -> tuple[int, object]:
        return http(self.base, method, path, body, **kw)

    def admin(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """Call an admin endpoint with the admin token."""
        return http(self.base, method, path, body,
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def server(workspace: Workspace):
    srv = Server(workspace, "--refresh-seconds", "0")
    srv.wait_ready()
    yield srv
    srv.stop()


@pytest.fixture
def workspace_copy(workspace: Workspace, tmp_path: Path) -> Workspace:
    """A copy of the trained session workspace to change freely, applied again so that Feast
    reads the copy's files."""
    return copy_workspace(workspace, tmp_path / "copy")


@pytest.fixture(scope="module")
def module_workspace_copy(workspace: Workspace,
                          tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The same, shared by a module's tests (which leave it fit for the next one)."""
    return copy_workspace(workspace, tmp_path_factory.mktemp("module") / "copy")


def copy_workspace(workspace: Workspace, root: Path) -> Workspace:
    shutil.copytree(workspace.root, root, symlinks=True,
                    ignore=shutil.ignore_patterns("server-*.log"))
    env = {**workspace.env, "HYBRIDREC_FEATURE_REPO": str(root / "feature_repo"),
           "HYBRIDREC_BUNDLES": str(root / "bundles")}
    ws = Workspace(root, root / "feature_repo", root / "bundles", env)
    # A fresh registry: the copied one names the original's online store in its
    # infrastructure, and applying over it would drop the original's tables.
    (ws.repo / "data" / "registry.db").unlink()
    run([str(BIN / "feast"), "apply"], env, cwd=ws.repo)
    return ws


@pytest.fixture
def server_class() -> type[Server]:
    """The ``Server`` helper, for plugin tests that start their own server."""
    return Server
