"""Feedback streamed at a server, one event per call, from a thread: what a durability test
kills the server in the middle of. It keeps every event the server acknowledged."""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any

from conftest import http

KINDS = {"shop": ("purchase", "cart", "view"), "video": ("like", "watch")}


def events_for(answers: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Distinct events on the items each answer showed, spread over the answers (one per
    answer in turn), so that no request id gets many in a row."""
    rounds = []
    for answer in answers:
        kinds = KINDS[answer["scenario"]]
        rounds.append([{"request_id": answer["request_id"], "item_id": item["item_id"],
                        "event_type": kind}
                       for item in answer["items"] for kind in kinds])
    return [e for step in zip(*rounds, strict=False) for e in step]


class FeedbackStream(threading.Thread):
    """Posts ``events`` to ``base`` one per call until they run out, ``stop`` is set, a call
    fails to connect (the server died), or ``seconds`` pass."""

    def __init__(self, base: str, events: list[dict[str, str]], seconds: float = 60) -> None:
        super().__init__(daemon=True)
        self.base, self.events, self.seconds = base, events, seconds
        self.acknowledged: list[dict[str, str]] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        for event in self.events:
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            try:
                status, body = http(self.base, "POST", "/v1/feedback", {"events": [event]})
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                return  # the server is gone: nothing more is acknowledged
            if status == 200 and isinstance(body, dict) and body.get("accepted") == 1:
                self.acknowledged.append(event)
            else:
                self.refused += 1

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` events were acknowledged (the stream is then still going)."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            if not self.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.acknowledged)} of {count} events "
                                     f"acknowledged ({self.refused} refused)")
            time.sleep(0.005)

    def killed_midway(self, *kills: Callable[[], None], after: int = 40
                      ) -> set[tuple[str, str, str]]:
        """Start; once ``after`` events are acknowledged, run ``kills`` (also when that
        never happens); wait for the stream to end and return what was acknowledged, as
        (request id, item, event type), each once."""
        self.start()
        try:
            self.wait_for(after)
        finally:
            for kill in kills:
                kill()
        self.join(timeout=30)
        assert not self.is_alive()
        acknowledged = {(e["request_id"], e["item_id"], e["event_type"])
                        for e in self.acknowledged}
        assert len(acknowledged) == len(self.acknowledged) >= after
        return acknowledged


def assert_each_once(acknowledged: set[tuple[str, str, str]],
                     rows: list[tuple[str, str, str]]) -> None:
    """Every acknowledged event is among ``rows`` (what the log holds after the crash), no
    row twice, and nothing more than the one call in flight besides."""
    assert acknowledged <= set(rows)
    assert len(rows) == len(set(rows)) <= len(acknowledged) + 1
