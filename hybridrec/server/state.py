"""What a running server holds, how it loads it, and how it follows a newly trained bundle.

The bundle, the Feast store and the item features load in a background thread; until then
(or after a failed load) ``recommender`` is None and the endpoints that need it answer 503
with ``error`` or a "still loading" reason. A watcher thread refreshes the item features and
switches to a new ``current`` bundle when ``hybridrec train`` writes one. Another deletes the
served rows past their retention (``HYBRIDREC_SERVED_RETENTION_DAYS``) once the bundle is
loaded and then every ``PRUNE_SECONDS``, off the requests' path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from hybridrec.adaptive import Settings
from hybridrec.isolation import Observer
from hybridrec.workspace import (
    ENV_EXPLORATION_SEED,
    ENV_SCORING_THREADS,
    ENV_SERVED_RETENTION,
    Workspace,
    exploration_seed,
    scoring_threads,
    served_retention_days,
)

log = logging.getLogger("hybridrec.server")
#: How often each server process prunes the served log (seconds).
PRUNE_SECONDS = 3600.0
#: How often ``/readyz`` looks again for the serving bundle's plugins among the installed
#: packages (seconds).
PLUGIN_CHECK_SECONDS = 5.0


class PluginChanges(NamedTuple):
    """What changed under a running server of the plugins its bundle uses."""

    #: ``{plugin: what the bundle uses of it}`` for each no longer installed.
    uninstalled: dict[str, list[str]]
    #: ``{plugin: (version loaded, version installed, what the bundle uses of it)}``.
    replaced: dict[str, tuple[str, str, list[str]]]


@dataclass
class Metrics:
    """The Prometheus metrics of one app (its own registry, so tests can build many apps)."""

    registry: Any
    http_requests: Any
    latency: Any
    served: Any
    feedback_events: Any
    bundle_info: Any
    policy_probability: Any
    policy_updates: Any
    recommend_latency: Any
    scorer_latency: Any
    plugin_failures: Any
    breaker_trips: Any
    degraded: Any
    fallbacks: Any
    bundle_refusals: Any
    bundle_refused: Any
    served_pruned: Any
    unmatched_pruned: Any
    prune_failures: Any

    @classmethod
    def create(cls) -> Metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        fine = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1)
        return cls(
            registry=registry,
            http_requests=Counter("hybridrec_http_requests", "HTTP requests",
                                  ["method", "route", "status"], registry=registry),
            latency=Histogram("hybridrec_http_request_duration_seconds", "Request latency",
                              ["route"], registry=registry,
                              buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5)),
            served=Counter("hybridrec_recommendations", "Recommendation responses",
                           ["scenario", "cold_start"], registry=registry),
            feedback_events=Counter("hybridrec_feedback_events", "Feedback events",
                                    ["outcome"], registry=registry),
            bundle_info=Gauge("hybridrec_bundle_info", "The bundle being served", ["version"],
                              registry=registry),
            policy_probability=Gauge("hybridrec_policy_arm_probability",
                                     "Each blend arm's probability of being drawn",
                                     ["scenario", "activity", "arm"], registry=registry),
            policy_updates=Gauge("hybridrec_policy_updates",
                                 "Rewards credited to the adaptive blend", ["scenario"],
                                 registry=registry),
            recommend_latency=Histogram("hybridrec_recommend_duration_seconds",
                                        "Ranking time of a recommendation", ["scenario"],
                                        registry=registry, buckets=fine),
            scorer_latency=Histogram("hybridrec_scorer_duration_seconds",
                                     "Time of one scorer's call", ["scenario", "scorer"],
                                     registry=registry, buckets=fine),
            plugin_failures=Counter("hybridrec_plugin_failures",
                                    "Components left out of an answer, by kind (raised, "
                                    "shape, timeout, busy, open)",
                                    ["scenario", "component", "kind"], registry=registry),
            breaker_trips=Counter("hybridrec_breaker_trips", "Circuit breakers opened",
                                  ["scenario", "component"], registry=registry),
            degraded=Counter("hybridrec_degraded_answers",
                             "Answers with something left out", ["scenario"],
                             registry=registry),
            fallbacks=Counter("hybridrec_fallbacks", "Answers ranked by a fallback",
                              ["scenario", "kind"], registry=registry),
            bundle_refusals=Counter("hybridrec_bundle_refusals", "Bundles refused at load",
                                    registry=registry),
            bundle_refused=Gauge("hybridrec_bundle_refused", "1 while the latest bundle "
                                 "tried was refused (the previous one serving)",
                                 registry=registry),
            served_pruned=Counter("hybridrec_served_pruned", "Served rows deleted by their "
                                  "retention (by this process)", registry=registry),
            unmatched_pruned=Counter("hybridrec_unmatched_pruned", "Audit entries of "
                                     "feedback for unknown request ids deleted by the served "
                                     "rows' retention (by this process)", registry=registry),
            prune_failures=Counter("hybridrec_served_prune_failures", "Prunings of the "
                                   "served log that failed", registry=registry))

    def observe_policies(self, recommender: Any) -> None:
        """Set the policy gauges from the adaptive state (on each scrape)."""
        self.policy_probability.clear()
        for name in recommender.adaptive:
            state = recommender.policy(name)
            self.policy_updates.labels(name).set(state["updates"])
            for context in state["contexts"]:
                for arm in context["arms"]:
                    self.policy_probability.labels(name, context["activity"], arm["arm"]).set(
                        arm["probability"])


class MetricsObserver(Observer):
    """Isolation's reports, as Prometheus metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def scorer_seconds(self, scenario: str, scorer: str, seconds: float) -> None:
        self.metrics.scorer_latency.labels(scenario, scorer).observe(seconds)

    def failure(self, scenario: str, component: str, kind: str) -> None:
        self.metrics.plugin_failures.labels(scenario, component, kind).inc()

    def trip(self, scenario: str, component: str) -> None:
        self.metrics.breaker_trips.labels(scenario, component).inc()


@dataclass
class ServerState:
    ws: Workspace
    bundle_version: str | None
    refresh_seconds: float
    metrics: Metrics = field(default_factory=Metrics.create)
    recommender: Any = None
    feedback: Any = None
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    created: float = field(default_factory=time.monotonic)

    #: The latest bundle refused, and why (cleared when one is served).
    refused: dict[str, Any] | None = None
    #: (bundle version, when, its plugins' changes) of the latest check.
    _plugin_check: tuple[str, float, PluginChanges] | None = None
    #: Why the bundle serving failed its probe (served anyway: there was no other).
    unchecked: str | None = None
    #: Per-user feedback rate limits (``routes.feedback.UserLimits``).
    limits: Any = None
    #: Served rows older than this many days are deleted (0: kept forever).
    retention_days: float = field(default_factory=lambda: served_retention_days(
        os.environ.get(ENV_SERVED_RETENTION)))
    #: Seconds between two prunings of the served log.
    prune_seconds: float = PRUNE_SECONDS
    #: Recommendations this process computes at once, each on a thread; more wait their
    #: turn in the event loop (one process runs Python on about one core: more threads
    #: would only take the interpreter's lock from each other).
    scoring_threads: int = field(default_factory=lambda: scoring_threads(
        os.environ.get(ENV_SCORING_THREADS)))
    #: The seed of the adaptive blend's exploration draws (None: unseeded).
    exploration_seed: int | None = field(default_factory=lambda: exploration_seed(
        os.environ.get(ENV_EXPLORATION_SEED)))
    #: The ``anyio.CapacityLimiter`` of ``scoring_threads``, made in the event loop.
    scoring_slots: Any = None
    _store: Any = None
    _reloading: threading.Lock = field(default_factory=threading.Lock)
    #: (modification time, size) of the item table the latest refresh could not read.
    _unreadable_items: tuple[int, int] | None = None

    def open_store(self) -> Any:
        """The Feast store, opened once, when a bundle first needs features."""
        if self._store is None:
            self.reopen_store()
        return self._store

    def reopen_store(self) -> Any:
        """The Feast store, opened afresh (after a failed read: the file may be new)."""
        from hybridrec.features import open_store

        self._store = open_store(self.ws.feature_repo)
        return self._store

    def recommender_for(self, bundle: Any) -> Any:
        """A serving Recommender of ``bundle``: exploring, isolating every component."""
        from hybridrec.recommender import Recommender

        recommender = Recommender(bundle, self.open_store, self.feedback, explore=True,
                                  isolate=True, observer=MetricsObserver(self.metrics),
                                  reopen_store=self.reopen_store,
                                  exploration_seed=self.exploration_seed)
        one_thread_per_request()  # once the bundle's native libraries are loaded
        return recommender

    def load(self, retry: bool = False) -> None:
        """Open the feedback log, load the bundle and its features; record a failure."""
        from hybridrec.feedback import open_feedback

        try:
            if self.feedback is None:
                self.feedback = open_feedback(self.ws)
            self.reload(retry=retry)
            self.error = None
            log.info("ready %.1f s after start", time.monotonic() - self.created)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("loading failed; /readyz answers 503 with the reason: %s", self.error)

    def load_until_ready(self) -> None:
        """Load, and after a failure try again (after 1, 2, 4 ... at most 30 s) until it
        succeeds or the server stops: a bundle trained or repaired later is picked up."""
        delay = 1.0
        self.load()
        while self.recommender is None and not self.stop.wait(delay):
            self.load(retry=True)
            delay = min(delay * 2, 30.0)

    def reload(self, retry: bool = False) -> dict[str, Any]:
        """Serve the pinned bundle or ``current`` if it is not the one serving: load it, rank
        a probe request per scenario, then switch in one assignment (requests in flight
        finish on the old one). A bundle that fails is refused, with the reason in
        ``refused``, and the old one keeps serving; the same files are not tried again
        unless ``retry``. Raises ``BundleError`` when refused."""
        from hybridrec.bundle import Bundle, BundleError, resolve

        with self._reloading:
            old = self.recommender
            path = resolve(self.ws.bundles, self.bundle_version)
            if old is not None and path == old.bundle.path:
                return {"switched": False, "bundle_version": old.version}
            key = _identity(path)
            if self.refused is not None and self.refused["key"] == key and not retry:
                raise BundleError(self.refused["reason"])
            start = time.monotonic()
            try:
                new = self.recommender_for(Bundle.load(self.ws.bundles, self.bundle_version))
            except Exception as exc:
                raise self._refuse(key, path.name, exc, old) from exc
            try:
                new.probe()
                self.unchecked = None
            except Exception as exc:
                if old is not None:
                    raise self._refuse(key, path.name, exc, old) from exc
                # Nothing else to serve: it serves, each request isolated from what failed
                # the probe, and /readyz says so.
                self.unchecked = (f"bundle {path.name} failed its probe and serves isolated: "
                                  f"{type(exc).__name__}: {exc}")
                log.error("%s", self.unchecked)
            self.recommender, self.refused = new, None
            self.metrics.bundle_refused.set(0)
            self.metrics.bundle_info.clear()
            self.metrics.bundle_info.labels(new.version).set(1)
            log.info("serving bundle %s (%d scenarios, %d items), loaded and checked in "
                     "%.1f s", new.version, len(new.scenarios), new.features.items_cached,
                     time.monotonic() - start)
            return {"switched": True, "bundle_version": new.version,
                    "previous": None if old is None else old.version}

    def _refuse(self, key: tuple[str, float], name: str, exc: Exception, old: Any
                ) -> Exception:
        """Record a refused bundle; the error to raise."""
        from hybridrec.bundle import BundleError

        what = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
        reason = f"bundle {name} refused: {what}"
        self.refused = {"key": key, "bundle": name, "reason": reason}
        self.metrics.bundle_refusals.inc()
        self.metrics.bundle_refused.set(1)
        log.error("%s%s", reason, "" if old is None else f"; still serving bundle {old.version}")
        return BundleError(reason)

    def watch(self) -> None:
        """Refresh item features; follow ``current`` to a newly trained bundle."""
        from hybridrec.bundle import BundleError

        while not self.stop.wait(self.refresh_seconds):
            rec = self.recommender
            if rec is None:
                continue
            try:
                if self.reload()["switched"]:
                    continue
                added = rec.refresh(self._items())
                if added:
                    log.info("%d new items added to the catalogue", added)
            except BundleError:
                pass  # refused and logged once; still serving the old one
            except Exception:
                log.exception("refresh failed; still serving bundle %s", rec.version)

    def retain(self) -> None:
        """Prune the served log once the bundle is loaded (its scenarios' windows say what
        to keep), then every ``prune_seconds``. Every process does; the deletes are
        idempotent, so the first does the work and the others find little left."""
        log.info("served rows are kept %g days, the adaptive windows' latest lists longer",
                 self.retention_days)
        delay = 1.0
        while not self.stop.wait(delay):
            if self.recommender is None or self.feedback is None:
                continue  # still loading
            self.prune_served()
            delay = self.prune_seconds

    def prune_served(self) -> int:
        """Delete the served rows past the retention (none when it is 0), keeping in every
        (scenario, bundle) of a bundle that may serve again the latest lists of the largest
        window a serving scenario follows, and the audit's unmatched feedback past it; count
        and log them (returns the served rows deleted). A failure is logged and counted,
        never raised: the next turn tries again, and one prune failing does not stop the
        other."""
        if self.retention_days <= 0:
            return 0
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
        deleted = self._prune("served rows", self.metrics.served_pruned, lambda: (
            self.feedback.prune_served(cutoff, keep_latest=self._kept_lists(),
                                       versions=self._bundle_versions())))
        audit = self._prune("unmatched feedback entries", self.metrics.unmatched_pruned,
                            lambda: self.feedback.prune_unmatched(cutoff))
        log.log(logging.INFO if deleted or audit else logging.DEBUG,
                "deleted %d served rows served before %s (each scenario's latest adaptive "
                "lists kept) and %d unmatched feedback entries received before it",
                deleted, cutoff.isoformat(timespec="seconds"), audit)
        return deleted

    def _prune(self, what: str, counter: Any, prune: Callable[[], int]) -> int:
        """``prune()``, counted in ``counter``; a failure logged and counted, returning 0."""
        try:
            deleted = int(prune())
        except Exception:
            if self.stop.is_set():
                return 0  # the log was closed under it: the server is stopping
            self.metrics.prune_failures.inc()
            log.exception("pruning the %s failed (serving goes on; tried again in %g s)",
                          what, self.prune_seconds)
            return 0
        counter.inc(deleted)
        return deleted

    def _bundle_versions(self) -> set[str] | None:
        """The bundles that may serve again, whose adaptive windows pruning keeps: those in
        the bundles folder (``hybridrec train --keep`` deletes the older ones) and the one
        serving; None, keeping every version's, when the folder cannot be read."""
        from hybridrec.bundle import stored

        try:
            names = {p.name for p in stored(self.ws.bundles)}
        except OSError:
            return None
        if self.recommender is not None:
            names.add(self.recommender.version)
        return names

    def plugin_changes(self) -> PluginChanges:
        """The serving bundle's plugins that are no longer installed, or installed at another
        version than this process loaded, with what the bundle uses of each (read at most
        every ``PLUGIN_CHECK_SECONDS``: it scans the environment's packages)."""
        from hybridrec.bundle import plugins_used
        from hybridrec.plugins import replaced, uninstalled

        rec = self.recommender
        if rec is None:
            return PluginChanges({}, {})
        now = time.monotonic()
        checked = self._plugin_check
        if checked is None or checked[0] != rec.version or now - checked[1] > \
                PLUGIN_CHECK_SECONDS:
            used = plugins_used(rec.bundle.manifest)
            changes = PluginChanges(
                {p: used[p] for p in uninstalled(used)},
                {p: (*versions, used[p]) for p, versions in replaced(used).items()})
            checked = self._plugin_check = (rec.version, now, changes)
        return checked[2]

    def _kept_lists(self) -> int:
        """How many of each (scenario, bundle)'s latest adaptive lists pruning keeps: the
        largest window the serving bundle's scenarios follow (as configured, or as an
        operator set it), and at least the default."""
        rec = self.recommender
        windows = [Settings.window]
        for name, blender in rec.adaptive.items() if rec is not None else ():
            control = self.feedback.policy_control(name, rec.version)
            windows += [blender.configured.window, int(control.get("window", 0))]
        return max(windows)

    def _items(self) -> Any:
        """The workspace's item table (for items created since training), or None: also when
        it cannot be read (a file another program is still writing), which is logged once
        per version of the file and read again at the next refresh."""
        from hybridrec import columns as C
        from hybridrec.data.tables import read_parquet

        path = self.ws.data_dir / C.ITEMS_FILE
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        try:
            return read_parquet(path)
        except Exception as exc:
            version = (stat.st_mtime_ns, stat.st_size)
            if version != self._unreadable_items:
                self._unreadable_items = version
                log.warning("could not read %s (%s: %s); new items join at the first refresh "
                            "that reads it whole (write it to another file and rename it "
                            "over this one)", path, type(exc).__name__, exc)
            return None

    def start(self, in_background: bool) -> None:
        if in_background:
            threading.Thread(target=self.load_until_ready, name="hybridrec-load",
                             daemon=True).start()
        else:
            self.load()
        if self.refresh_seconds > 0:
            threading.Thread(target=self.watch, name="hybridrec-watch", daemon=True).start()
        if self.retention_days > 0:
            threading.Thread(target=self.retain, name="hybridrec-retention",
                             daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        if self.recommender is not None:
            self.recommender.close()
        if self.feedback is not None:
            self.feedback.close()


def _identity(path: Any) -> tuple[str, float]:
    """A bundle's directory and its manifest's modification time: files repaired in place
    are a new candidate."""
    from hybridrec.bundle import MANIFEST

    manifest = path / MANIFEST
    return str(path), manifest.stat().st_mtime if manifest.exists() else 0.0


def one_thread_per_request() -> None:
    """Limit the thread pools of the native libraries loaded so far (BLAS, OpenMP) to one
    thread. A request is one core's work and parallelism is ``--workers``: BLAS's own
    threads only fight the other requests and workers for the cores (with them, the llm
    scorer's 500 x 64 by 64 x 128 product took ~12 ms instead of ~0.1 ms on a busy 2-core
    machine, and 2 workers served 46 requests/s instead of 250)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
