"""Connections that never complete a request are closed: ``hybridrec serve`` gives a request's
headers a deadline (from the connection or the previous response, however slowly they
trickle in) and its body another (from the end of the headers). Requests that arrive in
time, and keep-alive connections in use, are served as before.

Real sockets to a real server on 127.0.0.1, with deadlines of a second or two; every wait is
bounded, so a server that never closes fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BIN, Server, Workspace
from hybridrec.server.protocol import BODY_TIMEOUT, HEADER_TIMEOUT, deadline_protocol

#: The test server's deadlines, and how late past them a close may come on a busy machine.
HEADERS, BODY, SLACK = 1.0, 2.0, 1.5
#: A little early, for the clocks of client and server starting apart.
EARLY = 0.1

GET = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"
RECOMMEND = json.dumps({"user_id": "u00003", "scenario": "shop"}).encode()

@pytest.fixture(scope="module")
def server(workspace: Workspace) -> Iterator[Server]:
    """``hybridrec serve`` with ``HEADERS`` and ``BODY`` second deadlines."""
    args = ("--refresh-seconds", "0", "--header-timeout", str(HEADERS),
            "--body-timeout", str(BODY))
    srv = Server(workspace, *args)
    srv.wait_ready()
    yield srv
    srv.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def post(path: str, body: bytes, length: int | None = None) -> bytes:
    """A POST's request line and headers, announcing ``length`` bytes (``len(body)``)."""
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode()


def wait_closed(sock: socket.socket, limit: float, trickle: bytes = b"",
                every: float = 0.2) -> tuple[float | None, bytes]:
    """Seconds until the server closes ``sock`` (``None`` if it has not after ``limit``) and
    what it sent meanwhile, sending ``trickle`` one byte every ``every`` seconds."""
    start, received, pending = time.monotonic(), b"", iter(trickle)
    while (left := limit - (time.monotonic() - start)) > 0:
        if select.select([sock], [], [], min(every, left))[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return time.monotonic() - start, received
            received += chunk
            continue
        byte = next(pending, None)
        if byte is not None:
            try:
                sock.sendall(bytes([byte]))
            except OSError:  # closed between the select and the send
                return time.monotonic() - start, received
    return None, received


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of one response (with a Content-Length) read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines
                  if line.lower().startswith("content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of a response"
        body += chunk
    return int(lines[0].split()[1]), body


def send_slowly(sock: socket.socket, data: bytes, seconds: float, pieces: int = 5) -> None:
    """Send ``data`` in ``pieces`` spread over ``seconds``."""
    size = -(-len(data) // pieces)
    for at in range(0, len(data), size):
        sock.sendall(data[at:at + size])
        time.sleep(seconds / pieces)


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_silent_connection_is_closed_at_the_header_deadline(server):
    with connect(server) as sock:
        seconds, received = wait_closed(sock, HEADERS + SLACK)
    assert seconds is not None, f"still open after {HEADERS + SLACK} s"
    assert seconds >= HEADERS - EARLY
    assert received == b""  # nothing was asked, nothing is answered


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_silent_connections_give_their_descriptors_back(server):
    time.sleep(0.3)  # earlier tests' sockets closed
    before = open_descriptors(server.proc.pid)
    socks = [connect(server) for _ in range(20)]
    try:
        time.sleep(0.3)
        assert open_descriptors(server.proc.pid) >= before + 20
        time.sleep(HEADERS + SLACK)
        assert open_descriptors(server.proc.pid) <= before + 2
        assert all(sock.recv(1) == b"" for sock in socks)
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("after_a_response", [False, True],
                         ids=["new connection", "after a response"])
def test_trickled_headers_are_cut_at_the_deadline_with_a_408(server, after_a_response):
    with connect(server) as sock:
        if after_a_response:
            sock.sendall(GET)
            assert read_response(sock)[0] == 200
        headers = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"a" * 100
        seconds, received = wait_closed(sock, HEADERS + SLACK, trickle=headers)
    assert seconds is not None, f"still open after {HEADERS + SLACK} s of trickling"
    assert seconds >= HEADERS - EARLY
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in received.lower()


@pytest.mark.parametrize("trickle", [False, True], ids=["stalled", "trickled"])
def test_a_partial_body_is_cut_at_the_body_deadline(server, trickle):
    body = RECOMMEND + b" " * 200  # announced, never all sent
    with connect(server) as sock:
        sock.sendall(post("/v1/recommend", body) + body[:10])
        seconds, received = wait_closed(sock, BODY + SLACK,
                                        trickle=body[10:30] if trickle else b"")
    assert seconds is not None, f"still open after {BODY + SLACK} s"
    assert seconds >= BODY - EARLY  # the body's deadline, not the headers'
    assert received == b""
    assert server.call("GET", "/healthz")[0] == 200


def test_a_slow_request_that_arrives_in_time_is_answered(server):
    """Headers trickled over most of their deadline, then a body sent after the headers'
    deadline (but within the body's), on the same connection as an earlier request."""
    with connect(server) as sock:
        send_slowly(sock, GET, seconds=HEADERS * 0.6)
        assert read_response(sock)[0] == 200
        send_slowly(sock, post("/v1/recommend", RECOMMEND), seconds=HEADERS * 0.6)
        time.sleep(HEADERS * 0.8)  # past the headers' deadline since the last response
        send_slowly(sock, RECOMMEND, seconds=BODY * 0.3)
        status, body = read_response(sock)
    assert status == 200, body
    assert json.loads(body)["items"]


def test_a_busy_keep_alive_connection_is_not_cut(server):
    """Requests every half a deadline for several deadlines on one connection are all
    answered; once it falls silent, the connection is closed at the header deadline."""
    answers = []
    with connect(server) as sock:
        start = time.monotonic()
        while time.monotonic() - start < 2 * BODY + HEADERS:
            time.sleep(HEADERS / 2)
            sock.sendall(post("/v1/recommend", RECOMMEND) + RECOMMEND)
            answers.append(read_response(sock)[0])
            sock.sendall(GET)
            answers.append(read_response(sock)[0])
        seconds, received = wait_closed(sock, HEADERS + SLACK)
    assert len(answers) >= 8 and set(answers) == {200}
    assert seconds is not None and seconds >= HEADERS - EARLY
    assert received == b""


def test_the_protocol_with_its_deadlines_pickles_for_worker_processes():
    factory = pickle.loads(pickle.dumps(deadline_protocol(1.5, 4.0)))
    assert factory.keywords == {"header_timeout": 1.5, "body_timeout": 4.0}
    assert deadline_protocol().keywords == {"header_timeout": HEADER_TIMEOUT,
                                            "body_timeout": BODY_TIMEOUT}
    with pytest.raises(ValueError):
        deadline_protocol(0, 4.0)


def test_hybridrec_serve_offers_the_deadlines_with_their_defaults(workspace):
    result = subprocess.run([str(BIN / "hybridrec"), "serve", "--help"], env=workspace.env,
                            capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    headers, _, body = text.partition("--body-timeout")
    assert f"default: {HEADER_TIMEOUT}" in headers.partition("--header-timeout")[2]
    assert f"default: {BODY_TIMEOUT}" in body.partition("--")[0]
