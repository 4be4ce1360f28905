"""Feedback streamed at a server, one event per call, from a thread: what a durability test
kills the server in the middle of. It keeps every event the server acknowledged."""

from __future__ import annotations

import threading
import time
import urllib.error
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
