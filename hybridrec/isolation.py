"""Serving isolates plugins: one scorer that raises, returns the wrong shape or hangs costs a
request that scorer's opinion, never the answer.

A request's scorers are called one after another on one thread of the scenario's pool; the
request waits for each at most the scenario's ``scorer_budget_ms`` from when it could start
and blends what came back (a scorer that overruns is left out, and the ones after it go on
another thread). A scorer that failed is named in the answer's ``degraded`` list with the
reason. A ``Breaker`` per scorer counts failures in a row: after ``breaker_failures`` it
opens, and the scorer is not called (left out at once, so a hung plugin cannot hold threads
or time) until ``breaker_cooldown`` seconds have passed; then one request tries it again,
and a success closes the breaker. A scorer with ``STUCK_LIMIT`` calls still running past
their budget is left out at once too: threads do not pile up behind a plugin that never
returns. Feature reads from the online store get the same treatment (``Guard.fetch``).

Training and offline evaluation do not use this: there a broken component is an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

log = logging.getLogger("hybridrec.isolation")

#: Threads one scenario's scorers and feature reads run on, per server process.
POOL_SIZE = 32
#: Calls of one component still running past their budget at which it is left out at once.
STUCK_LIMIT = 4
#: The longest pause before the online store is tried again after it failed (seconds).
STORE_COOLDOWN = 5.0


@dataclass(frozen=True)
class Degraded:
    """A part of the answer that is missing or replaced, and why."""

    component: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"component": self.component, "reason": self.reason}


class Observer:
    """Where isolation reports what happened (the server's Prometheus metrics); does
    nothing by default."""

    def scorer_seconds(self, scenario: str, scorer: str, seconds: float) -> None:
        """A scorer answered in ``seconds``."""

    def failure(self, scenario: str, component: str, kind: str) -> None:
        """A component failed: ``kind`` is raised, shape, timeout, busy or open."""

    def trip(self, scenario: str, component: str) -> None:
        """A breaker opened."""


class Breaker:
    """Failures in a row of one component; open for ``cooldown`` seconds after
    ``threshold`` of them, then half-open: one call tries it, its outcome decides."""

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold, self.cooldown = threshold, cooldown
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self._lock = threading.Lock()

    def allow(self, now: float) -> bool:
        with self._lock:
            if self.failures < self.threshold:
                return True
            if now < self.open_until or self.probing:
                return False
            self.probing = True  # half-open: this call is the trial
            return True

    def succeeded(self) -> None:
        with self._lock:
            self.failures, self.probing = 0, False

    def failed(self, now: float) -> bool:
        """Count a failure; True when this one opened the breaker."""
        with self._lock:
            self.failures += 1
            reopened = self.probing
            self.probing = False
            if self.failures >= self.threshold:
                self.open_until = now + self.cooldown
                return reopened or self.failures == self.threshold
            return False

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold

    def state(self, now: float) -> dict[str, Any]:
        return {"state": "closed" if not self.is_open else "half-open" if self.probing
                or now >= self.open_until else "open",
                "failures_in_a_row": self.failures,
                "retry_in_seconds": round(max(0.0, self.open_until - now), 1)
                if self.is_open else None}


Check = Callable[[str, Mapping[str, Any], int], dict[str, np.ndarray]]


class Guard:
    """Runs one scenario's scorers for a batch within its time budget (see the module)."""

    def __init__(self, scenario: str, budget_ms: float, threshold: int, cooldown: float,
                 observer: Observer | None = None,
                 shared: Mapping[str, Breaker] | None = None) -> None:
        """``shared``: breakers of components several scenarios use (the online store)."""
        self.scenario = scenario
        self.budget = budget_ms / 1000.0
        self.threshold, self.cooldown = threshold, cooldown
        self.observer = observer or Observer()
        self.breakers: dict[str, Breaker] = dict(shared or {})
        self._executor: ThreadPoolExecutor | None = None
        self._past_budget: dict[str, int] = {}
        self._lock = threading.Lock()

    def score(self, scorers: Mapping[str, Any], batch: Any, check: Check
              ) -> tuple[dict[str, dict[str, np.ndarray]], list[Degraded]]:
        """Every scorer's checked outputs that came in time, and what was left out."""
        start = time.monotonic()
        outputs: dict[str, dict[str, np.ndarray]] = {}
        left: list[Degraded] = []
        calls: list[tuple[str, Callable[[Any], Mapping[str, Any]]]] = []
        for name, scorer in scorers.items():
            breaker = self._breaker(name)
            if not breaker.allow(start):
                left.append(self._refused(name, breaker, start))
            elif self.budget <= 0:
                self._collect(name, partial(_timed, scorer.score, batch), batch, check,
                              outputs, left)
            elif not self._too_stuck(name, "calls", left):
                calls.append((name, scorer.score))
        if calls:
            self._run(_Run(calls, batch), check, outputs, left)
        return outputs, left

    def _run(self, run: _Run, check: Check, outputs: dict[str, dict[str, np.ndarray]],
             left: list[Degraded]) -> None:
        """Wait for each call of ``run`` in turn, at most the budget from when it could
        start; one that overruns is left out and the calls after it go on another thread."""
        i, ready = 0, time.monotonic()
        self._pool().submit(run.drain, 0, 0, self._done)
        while i < len(run.calls):
            name = run.calls[i][0]
            with run.cond:
                result = run.wait(i, ready, self.budget)
                started = i in run.started
                if result is None:
                    run.generation += 1  # the threads still on this run stop after the call
                    if started:
                        self._stuck(name)
            if result is not None:
                self._collect(name, result, run.batch, check, outputs, left)
            elif not started:  # every thread busy: nothing after it would start either
                for late, _ in run.calls[i:]:
                    self._failed(late, "busy", f"no thread free within its "
                                               f"{self.budget * 1000:g} ms budget", left)
                return
            else:
                self._failed(name, "timeout", f"no answer within its {self.budget * 1000:g} "
                                              "ms budget", left)
                if i + 1 < len(run.calls):
                    self._pool().submit(run.drain, i + 1, run.generation, self._done)
            i, ready = i + 1, time.monotonic()

    def fetch(self, name: str, read: Callable[[], Any], fallback: Callable[[], Any]
              ) -> tuple[Any, Degraded | None]:
        """``read()`` (a feature fetch) within the budget and behind its own breaker; on a
        failure, ``fallback()`` and why."""
        start = time.monotonic()
        breaker = self._breaker(name)
        if not breaker.allow(start):
            return fallback(), self._refused(name, breaker, start)
        left: list[Degraded] = []
        outputs: dict[str, Any] = {}
        if self.budget <= 0:
            self._collect(name, partial(_timed, lambda _: read(), None), None, _as_is,
                          outputs, left)
        elif not self._too_stuck(name, "reads", left):
            future = self._pool().submit(_timed, lambda _: read(), None)
            if wait([future], timeout=self.budget).done:
                self._collect(name, future.result, None, _as_is, outputs, left)
            else:
                self._stuck(name, future)
                self._failed(name, "timeout", f"no answer within its {self.budget * 1000:g} "
                                              "ms budget", left)
        if left:
            return fallback(), left[0]
        return outputs[name], None

    def _collect(self, name: str, result: Callable[[], tuple[Mapping[str, Any], float]],
                 batch: Any, check: Check, outputs: dict[str, dict[str, np.ndarray]],
                 left: list[Degraded]) -> None:
        from hybridrec.pipeline import ScoringError

        try:
            raw, seconds = result()
            outputs[name] = check(name, raw, 0 if batch is None else len(batch))
        except ScoringError as exc:
            self._failed(name, "shape", str(exc), left)
            return
        except Exception as exc:  # a plugin's own error: named, never the request's
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            self._failed(name, "raised", f"raised {type(exc).__name__}"
                                         + (f": {first}" if first else ""), left, exc)
            return
        self._breaker(name).succeeded()
        self.observer.scorer_seconds(self.scenario, name, seconds)

    def _failed(self, name: str, kind: str, reason: str, left: list[Degraded],
                exc: BaseException | None = None) -> None:
        left.append(Degraded(_label(name), reason))
        self.observer.failure(self.scenario, name, kind)
        breaker = self._breaker(name)
        if breaker.failed(time.monotonic()):
            self.observer.trip(self.scenario, name)
            log.warning("scenario %r: %s left out for %g s after %d failures in a row "
                        "(latest: %s)", self.scenario, _label(name), breaker.cooldown,
                        self.threshold, reason, exc_info=exc)
        elif exc is not None:
            log.debug("scenario %r: %s failed", self.scenario, _label(name), exc_info=exc)

    def _refused(self, name: str, breaker: Breaker, now: float) -> Degraded:
        self.observer.failure(self.scenario, name, "open")
        return Degraded(_label(name), f"left out after {breaker.failures} failures in "
                                            f"a row; tried again in "
                                            f"{max(0.0, breaker.open_until - now):.0f} s")

    def _breaker(self, name: str) -> Breaker:
        breaker = self.breakers.get(name)
        if breaker is None:
            with self._lock:
                breaker = self.breakers.setdefault(name, Breaker(self.threshold,
                                                                 self.cooldown))
        return breaker

    def _too_stuck(self, name: str, calls: str, left: list[Degraded]) -> bool:
        """Whether ``STUCK_LIMIT`` of the component's earlier ``calls`` still run past their
        budget; if so it is left out as busy (in ``left``), not called again meanwhile."""
        if self._past_budget.get(name, 0) < STUCK_LIMIT:
            return False
        self._failed(name, "busy", f"{STUCK_LIMIT} earlier {calls} are still running past "
                                   "their budget", left)
        return True

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        POOL_SIZE, thread_name_prefix=f"hybridrec-{self.scenario}")
        return self._executor

    def _stuck(self, name: str, future: Future[Any] | None = None) -> None:
        """Count a call past its budget until it ends (``_done``, called when ``future``
        ends, or by the thread running it)."""
        with self._lock:
            self._past_budget[name] = self._past_budget.get(name, 0) + 1
        if future is not None:
            future.add_done_callback(lambda _: self._done(name))

    def _done(self, name: str) -> None:
        with self._lock:
            self._past_budget[name] -= 1

    def past_budget(self) -> dict[str, int]:
        """Per component, its calls still running past their budget."""
        with self._lock:
            return dict(self._past_budget)

    def state(self) -> dict[str, dict[str, Any]]:
        """Each of the scenario's own components' breaker (for ``/readyz``)."""
        now = time.monotonic()
        return {name: breaker.state(now) for name, breaker in self.breakers.items()
                if name != FEATURES}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class _Run:
    """One request's scorer calls, made one after another on one pool thread: a thread per
    scorer cost more CPU in hand-offs than most scorers take. ``generation`` moves on when
    the request stops waiting; a thread of an older generation finishes its call and
    stops."""

    def __init__(self, calls: list[tuple[str, Callable[[Any], Mapping[str, Any]]]],
                 batch: Any) -> None:
        self.calls, self.batch = calls, batch
        self.cond = threading.Condition()
        self.generation = 0
        self.started: dict[int, float] = {}
        self.results: dict[int, Callable[[], tuple[Mapping[str, Any], float]]] = {}

    def drain(self, first: int, generation: int, late: Callable[[str], None]) -> None:
        """Call ``calls[first:]`` in turn (on a pool thread); ``late(name)`` after a call
        the request stopped waiting for."""
        for i in range(first, len(self.calls)):
            name, fn = self.calls[i]
            with self.cond:
                if self.generation != generation:
                    return
                self.started[i] = time.monotonic()
            try:
                out = _timed(fn, self.batch)
                result: Callable[[], tuple[Mapping[str, Any], float]] = partial(_given, out)
            except Exception as exc:  # handed to the request, which names it
                result = partial(_reraise, exc)
            with self.cond:
                if self.generation != generation:
                    late(name)
                    return
                self.results[i] = result
                if i == len(self.calls) - 1:  # the request wakes once, for every result;
                    self.cond.notify_all()  # a deadline wakes it earlier (``wait``)

    def wait(self, i: int, ready: float, budget: float
             ) -> Callable[[], tuple[Mapping[str, Any], float]] | None:
        """Call ``i``'s result, or None once ``budget`` seconds have passed since it started
        (or, not started, since ``ready``). The caller holds ``cond``. The thread making the
        calls notifies after the last one only (woken after each, the request took the
        interpreter's lock from the calls still to make, for nothing): a call that answered
        in time is found when the request wakes at its deadline or at the end."""
        while i not in self.results:
            remaining = self.started.get(i, ready) + budget - time.monotonic()
            if remaining <= 0:
                return None
            self.cond.wait(remaining)
        return self.results[i]


def _given(value: tuple[Mapping[str, Any], float]) -> tuple[Mapping[str, Any], float]:
    return value


def _reraise(exc: Exception) -> tuple[Mapping[str, Any], float]:
    raise exc


def store_breaker(threshold: int) -> Breaker:
    """The online store's breaker, shared by every scenario: one store, one state; tried
    again ``STORE_COOLDOWN`` seconds after it opened."""
    return Breaker(threshold, STORE_COOLDOWN)


def _timed(fn: Callable[[Any], Mapping[str, Any]], batch: Any
           ) -> tuple[Mapping[str, Any], float]:
    start = time.perf_counter()
    out = fn(batch)
    return out, time.perf_counter() - start


#: The component name ``Guard.fetch`` reports feature reads under.
FEATURES = "features"


def _label(name: str) -> str:
    return "online features" if name == FEATURES else f"scorer {name!r}"


def _as_is(name: str, value: Any, n: int) -> Any:
    return value
