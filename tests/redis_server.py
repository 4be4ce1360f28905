"""A real ``redis-server`` for tests: installed from Debian's package when missing (as root),
started on a free loopback port in its own directory with the settings that make an
acknowledged write durable (``appendonly yes``, ``appendfsync always``), and stopped, killed
or restarted from its append-only file."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def find_or_install() -> str:
    """The ``redis-server`` binary; installed with apt when absent, or the test is skipped
    with the reason it could not be."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("redis-server is not installed, and it cannot be installed here (needs "
                    "root and apt-get): apt-get install redis-server")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [["apt-get", "install", "-y", "-q", "redis-server"]]
    for attempt in (steps, [["apt-get", "update", "-q"], *steps]):
        results = [subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
                   for step in attempt]
        found = shutil.which("redis-server")
        if found:
            return found
    pytest.skip(f"apt-get install redis-server failed: {results[-1].stderr[-500:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One ``redis-server`` on 127.0.0.1 whose data lives in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.binary = find_or_install()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def feast_connection(self) -> str:
        """The same server as Feast's Redis online store names it."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or start again, from the append-only file) and wait for ``PING``."""
        log = (self.directory / "redis.log").open("a")
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
             "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: "
                                     f"{(self.directory / 'redis.log').read_text()[-2000:]}")
            if self.ping():
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not answer PING within 30 s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """``SIGTERM``: a clean shutdown; ``SIGKILL``: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None
