"""What a running server holds, how it loads it, and how it follows a newly trained bundle.

The bundle, the Feast store and the item features load in a background thread; until then
(or after a failed load) ``recommender`` is None and the endpoints that need it answer 503
with ``error`` or a "still loading" reason. A watcher thread refreshes the item features and
switches to a new ``current`` bundle when ``hybridrec train`` writes one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hybridrec.workspace import Workspace

log = logging.getLogger("hybridrec.server")


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

    @classmethod
    def create(cls) -> Metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
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
                                 registry=registry))

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

    _store: Any = None

    def open_store(self) -> Any:
        """The Feast store, opened once, when a bundle first needs features."""
        if self._store is None:
            from hybridrec.features import open_store

            self._store = open_store(self.ws.feature_repo)
        return self._store

    def load(self) -> None:
        """Open the feedback log, load the bundle and the features; record a failure."""
        from hybridrec.bundle import Bundle
        from hybridrec.feedback import open_feedback
        from hybridrec.recommender import Recommender

        try:
            start = time.monotonic()
            if self.feedback is None:
                self.feedback = open_feedback(self.ws)
            bundle = Bundle.load(self.ws.bundles, self.bundle_version)
            recommender = Recommender(bundle, self.open_store, self.feedback, explore=True)
            self.recommender, self.error = recommender, None
            self.metrics.bundle_info.labels(recommender.version).set(1)
            log.info("loaded bundle %s from %s in %.1f s (%d scenarios, %d items)",
                     recommender.version, bundle.path, time.monotonic() - start,
                     len(recommender.scenarios), recommender.features.items_cached)
            log.info("ready %.1f s after start", time.monotonic() - self.created)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading failed; /readyz answers 503 with the reason")

    def load_until_ready(self) -> None:
        """Load, and after a failure try again (after 1, 2, 4 ... at most 30 s) until it
        succeeds or the server stops: a bundle trained or repaired later is picked up."""
        delay = 1.0
        self.load()
        while self.recommender is None and not self.stop.wait(delay):
            self.load()
            delay = min(delay * 2, 30.0)

    def watch(self) -> None:
        """Refresh item features; follow ``current`` to a newly trained bundle."""
        from hybridrec.bundle import Bundle, resolve
        from hybridrec.recommender import Recommender

        while not self.stop.wait(self.refresh_seconds):
            rec = self.recommender
            if rec is None:
                continue
            try:
                if self.bundle_version is None and resolve(self.ws.bundles) != rec.bundle.path:
                    new = Recommender(Bundle.load(self.ws.bundles), self.open_store,
                                      self.feedback, explore=True)
                    self.metrics.bundle_info.clear()
                    self.metrics.bundle_info.labels(new.version).set(1)
                    self.recommender = new
                    log.info("switched to bundle %s", new.version)
                else:
                    added = rec.refresh(self._items())
                    if added:
                        log.info("%d new items added to the catalogue", added)
            except Exception:
                log.exception("refresh failed; still serving bundle %s", rec.version)

    def _items(self) -> Any:
        """The workspace's item table (for items created since training), or None."""
        from hybridrec import columns as C
        from hybridrec.data.tables import read_parquet

        path = self.ws.data_dir / C.ITEMS_FILE
        return read_parquet(path) if path.exists() else None

    def start(self, in_background: bool) -> None:
        if in_background:
            threading.Thread(target=self.load_until_ready, name="hybridrec-load",
                             daemon=True).start()
        else:
            self.load()
        if self.refresh_seconds > 0:
            threading.Thread(target=self.watch, name="hybridrec-watch", daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        if self.feedback is not None:
            self.feedback.close()
