"""Blend weights that adapt online: per scenario, a contextual bandit over ways of blending.

**Arms.** The bundle's blender says each input's term of a candidate's score
(``Blender.contributions``). ``offline`` keeps them (the bundle's own ranking, what training
chose). ``toward:KEY`` moves the ranking part of the way toward the scorer output ``KEY``'s
own: every offline term times ``1 - tilt``, plus ``tilt`` times ``KEY``'s z-score over the
request's candidates, scaled to the spread of the offline scores (so the tilt means the same
whatever the blender's scale, and follows the output's direction even where the offline
weight on it is negative). A blend of fewer than two scorer outputs (a
cold start's fallback) has nothing to choose: it is the bundle's blender's, ``fixed``.

**Context.** The user's activity bucket (``hybridrec.objectives``: cold, light, heavy), the
same the learned blender's weights depend on.

**State and reward.** Per (bundle, scenario, bucket, arm): how many lists the arm served
(``pulls``) and the sum of their rewards. A list's reward is the largest objective gain
(``Scenario.gains``, capped at 1) among the feedback events on its items, credited once per
list however many events arrive. The log (``FeedbackLog``) applies both in the same SQLite
transaction as the served row or the feedback events, so every acknowledged update counts
exactly once, across restarts and across server processes sharing the workspace.

**Policy.** The policy follows the scenario's latest ``window`` lists (so that it can follow
a change in what works; the totals stay in the state). Each arm's reward rate over them has
a Beta posterior whose prior is worth
``PRIOR_STRENGTH`` lists at the bucket's pooled rate. The *greedy* arm is ``offline`` (a new
bundle starts from its offline weights) until another arm that has served at least
``MIN_PULLS`` lists has a higher posterior mean. With exploration rate ``e``, arm ``a`` is
drawn with probability ``(1 - e) [a is greedy] + e TS(a)``, where ``TS(a)`` is the probability that
Thompson sampling picks ``a`` (estimated from seeded posterior draws). So the probability of
leaving the greedy arm never exceeds ``e``, every probability is known exactly when the arm
is drawn, and it is logged with the decision for off-policy evaluation. A frozen scenario
(``adapt = false``) serves its greedy arm with probability 1 and learns nothing more.
Exploration and freezing are set per scenario in the training config and can be changed
while serving (``POST /v1/admin/scenarios/{name}/policy``, kept in the log so every server
process follows). ``hybridrec recommend`` logs nothing, so it does not explore: it shows
the greedy arm's list.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from hybridrec.contracts import (
    Blend,
    Blender,
    BlendExamples,
    ScoreBatch,
    TrainingData,
    scorer_output,
)
from hybridrec.objectives import BUCKETS, activity_bucket
from hybridrec.ranking import group_standardise, group_std, nan_to_zero

log = logging.getLogger("hybridrec.adaptive")

OFFLINE = "offline"
TOWARD = "toward:"
#: The policy name of decisions that update the state, and of those that do not.
ADAPTIVE, FROZEN = "adaptive", "adaptive-frozen"
#: Posterior draws behind each Thompson sampling probability.
DRAWS = 4000
#: The prior's weight, in lists, and the lists an arm must have served before it can
#: replace ``offline`` as the greedy arm.
PRIOR_STRENGTH, MIN_PULLS = 10.0, 30
#: The shortest and longest interval between a server's re-reads of a policy (seconds);
#: 0 re-reads before every decision.
MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS = 0.1, 300.0

#: ``{(bucket, arm): (pulls, reward)}`` for one bundle and scenario.
Counts = Mapping[tuple[str, str], tuple[float, float]]


class PolicyStore(Protocol):
    """Where the adaptive state lives (``FeedbackLog``)."""

    def policy_counts(self, bundle_version: str, scenario: str,
                      window: int | None = None) -> Counts: ...

    def policy_control(self, scenario: str, bundle_version: str) -> dict[str, Any]: ...


def arms_for(keys: list[str]) -> list[str]:
    """The arms over a blend's scorer outputs: ``offline`` first, then one per output."""
    return [OFFLINE, *(TOWARD + k for k in keys)] if len(keys) >= 2 else [OFFLINE]


def mix(arm: str, tilt: float) -> dict[str, float]:
    """What ``arm`` blends: the share of the offline score, and of the output it tilts to."""
    if arm == OFFLINE:
        return {OFFLINE: 1.0}
    return {OFFLINE: 1.0 - tilt, arm.removeprefix(TOWARD): tilt}


def arm_probabilities(pulls: np.ndarray, rewards: np.ndarray, exploration: float,
                      draws: int = DRAWS) -> np.ndarray:
    """Each arm's probability of being drawn (module docstring); arm 0 is ``offline``.
    Deterministic for given counts: the posterior draws are seeded by them."""
    pulls, rewards = np.asarray(pulls, dtype=float), np.asarray(rewards, dtype=float)
    alpha, beta = posterior(pulls, rewards)
    mean = alpha / (alpha + beta)
    ready = pulls >= MIN_PULLS
    ready[0] = True
    greedy = int(np.argmax(np.where(ready, mean, -np.inf)))
    out = np.zeros(len(pulls))
    if exploration <= 0 or len(pulls) == 1:
        out[greedy] = 1.0
        return out
    out[greedy] = 1.0 - exploration
    seed = zlib.crc32(np.concatenate([pulls, rewards]).round(6).tobytes())
    sample = np.random.default_rng(seed).beta(alpha, beta, size=(draws, len(pulls)))
    return out + exploration * np.bincount(sample.argmax(axis=1), minlength=len(pulls)) / draws


@lru_cache(maxsize=256)
def _probabilities(pulls: tuple[float, ...], rewards: tuple[float, ...], exploration: float
                   ) -> tuple[float, ...]:
    """``arm_probabilities`` of counts seen before, not drawn again (a re-read finds most
    buckets' counts unchanged; the draws take about 2 ms for 7 arms)."""
    return tuple(arm_probabilities(np.array(pulls), np.array(rewards), exploration).tolist())


def posterior(pulls: np.ndarray, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each arm's Beta posterior: a prior of ``PRIOR_STRENGTH`` lists at the bucket's pooled
    reward rate (so an arm not yet tried is as good as the average, not as good as a coin),
    plus the arm's own rewards and misses."""
    rate = (1.0 + rewards.sum()) / (2.0 + pulls.sum())
    misses = np.maximum(pulls - rewards, 0.0)
    return PRIOR_STRENGTH * rate + rewards, PRIOR_STRENGTH * (1.0 - rate) + misses


def check_refresh_seconds(value: float) -> float:
    """``value`` if it is 0 or from ``MIN_REFRESH_SECONDS`` to ``MAX_REFRESH_SECONDS``; else a
    ValueError naming the setting (in between, every decision would start a re-read in the
    background and be drawn from the snapshot before it)."""
    if not (value == 0 or MIN_REFRESH_SECONDS <= value <= MAX_REFRESH_SECONDS):
        raise ValueError(f"refresh_seconds must be 0 (re-read before every decision) or from "
                         f"{MIN_REFRESH_SECONDS:g} to {MAX_REFRESH_SECONDS:g} seconds, got "
                         f"{value}")
    return value


@dataclass(frozen=True)
class Settings:
    """How a scenario adapts: the exploration rate, the tilt of the arms, whether frozen,
    how many of the latest lists it follows, and how often the state is re-read (seconds;
    0: before every decision)."""

    exploration: float = 0.1
    tilt: float = 0.5
    adapt: bool = True
    window: int = 5000
    refresh_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must be between 0 and 1, got {self.exploration}")
        if not 0.0 < self.tilt <= 1.0:
            raise ValueError(f"tilt must be above 0 and at most 1, got {self.tilt}")
        if self.window < 1:
            raise ValueError(f"window must be at least 1 list, got {self.window}")
        check_refresh_seconds(self.refresh_seconds)


@dataclass(frozen=True)
class Snapshot:
    """The settings and arm probabilities one decision is drawn and logged with."""

    settings: Settings
    table: np.ndarray

    @property
    def policy(self) -> str:
        return ADAPTIVE if self.settings.adapt else FROZEN


class AdaptiveBlender(Blender):
    """The bundle's blender for one scenario, with arms drawn by the bandit. Built by the
    server around the fitted blender; not a component a bundle stores."""

    name = ADAPTIVE

    def __init__(self, base: Blender, scenario: str, version: str, store: PolicyStore,
                 settings: Settings | None = None, explore: bool = True,
                 seed: int | None = None) -> None:
        super().__init__()
        self.base, self.scenario, self.version = base, scenario, version
        self.configured = settings or Settings()
        self.settings = self.configured
        self.explore = explore
        self.store = store
        #: Exploration draws: seeded (with the scenario and the bundle) for a reproducible
        #: run.
        self._rng = np.random.default_rng(None if seed is None else [
            seed, zlib.crc32(scenario.encode()), zlib.crc32(version.encode())])
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._cache: dict[tuple[str, ...], tuple[float, Snapshot]] = {}
        #: Bumped by ``forget``: a re-read that began before it does not cache what it read.
        self._generation = 0
        #: Re-reads failed in a row (the first of a run is logged with its traceback).
        self.failed_rereads = 0
        self._failure: type[BaseException] | None = None
        #: The arms of the latest adaptive decision (they follow the scorer outputs).
        self.arms: list[str] = []

    def fit(self, data: TrainingData, examples: BlendExamples | None = None) -> None:
        raise TypeError("the adaptive blender learns online from feedback; fit the "
                        "bundle's blender instead")

    def observe(self, data: TrainingData) -> None:
        self.base.observe(data)

    def save(self, path: Path) -> None:
        raise TypeError("the adaptive state lives in the feedback log, not in a bundle")

    @classmethod
    def load(cls, path: Path) -> Self:
        raise TypeError("the adaptive blender is built by the server around a bundle's "
                        "blender")

    def blend(self, scores: Mapping[str, Mapping[str, np.ndarray]],
              batch: ScoreBatch) -> np.ndarray:
        return self.decide(scores, batch).scores

    def contributions(self, scores: Mapping[str, Mapping[str, np.ndarray]],
                      batch: ScoreBatch) -> dict[str, np.ndarray] | None:
        return self.decide(scores, batch).contributions

    def describe(self) -> dict[str, Any]:
        return {"base": self.base.name, "exploration": self.settings.exploration,
                "tilt": self.settings.tilt, "adapt": self.settings.adapt}

    def probabilities(self, arms: list[str], fresh: bool = False) -> Snapshot:
        """The settings and, per bucket (rows, as ``BUCKETS``), each arm's probability now,
        as one snapshot; re-read from the state at most every ``refresh_seconds``, unless
        ``fresh``. A stale snapshot is re-read by a background thread while requests keep
        being drawn with it (the re-read, a query over the window, takes milliseconds:
        inline, it was the slowest request of every second). ``refresh_seconds = 0`` re-reads
        before every decision, inline: each draw follows every update before it, whatever
        the request rate (reproducible with a seed, at two queries per decision)."""
        key = tuple(arms)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and not fresh and cached[1].settings.refresh_seconds > 0:
            stale = time.monotonic() - cached[0] >= cached[1].settings.refresh_seconds
            if stale and self._refreshing.acquire(blocking=False):
                try:
                    threading.Thread(target=self._reread_logged, args=(arms,), daemon=True,
                                     name="hybridrec-policy").start()
                except RuntimeError:  # no thread to be had: the next request tries again
                    self._refreshing.release()
            return cached[1]
        self._refreshing.acquire()
        try:
            return self._reread(arms)
        except Exception as exc:
            if cached is None or fresh:  # nothing to serve instead, or asked to read now
                raise
            self._reread_failed(exc)  # refresh_seconds 0: the last snapshot serves
            return cached[1]
        finally:
            self._refreshing.release()

    def _reread_logged(self, arms: list[str]) -> None:
        """``_reread`` on a background thread: a failure is logged (with its traceback the
        first time and whenever it changes kind) and the previous snapshot serves until the
        next attempt; then the next re-read may start (the caller holds ``_refreshing``)."""
        try:
            self._reread(arms)
        except Exception as exc:
            self._reread_failed(exc)
            with self._lock:  # the next attempt after refresh_seconds, not next request
                if (cached := self._cache.get(tuple(arms))) is not None:
                    self._cache[tuple(arms)] = (time.monotonic(), cached[1])
        finally:
            self._refreshing.release()

    def _reread_failed(self, exc: Exception) -> None:
        """Count a failed re-read; log it with its traceback the first time and whenever it
        changes kind."""
        self.failed_rereads += 1
        if type(exc) is not self._failure:
            log.error("re-reading the %s policy failed; its previous probabilities serve "
                      "until the next attempt", self.scenario, exc_info=exc)
            self._failure = type(exc)
        else:
            log.debug("re-reading the %s policy failed again (%d in a row): %s",
                      self.scenario, self.failed_rereads, exc)

    def _reread(self, arms: list[str]) -> Snapshot:
        """Read the state and cache the snapshot (the caller holds ``_refreshing``)."""
        now, generation = time.monotonic(), self._generation
        control = self.store.policy_control(self.scenario, self.version)
        settings = replace(self.configured, **control)
        counts = self.store.policy_counts(self.version, self.scenario, settings.window)
        rate = settings.exploration if settings.adapt and self.explore else 0.0
        table = np.array([_probabilities(
            tuple(counts.get((bucket, a), (0.0, 0.0))[0] for a in arms),
            tuple(counts.get((bucket, a), (0.0, 0.0))[1] for a in arms), rate)
            for bucket in BUCKETS])
        snapshot = Snapshot(settings, table)
        if self.failed_rereads:
            log.warning("re-reading the %s policy works again after %d failures",
                        self.scenario, self.failed_rereads)
            self.failed_rereads, self._failure = 0, None
        with self._lock:
            if generation == self._generation:  # else forgotten meanwhile: read again
                self._cache[tuple(arms)] = (now, snapshot)
                self.settings = settings
        return snapshot

    def forget(self) -> None:
        """Drop the cached probabilities: the next request re-reads the state."""
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def decide(self, scores: Mapping[str, Mapping[str, np.ndarray]],
               batch: ScoreBatch) -> Blend:
        parts = self.base.contributions(scores, batch)
        outputs = {f"{s}.{t}" for s, tasks in scores.items() for t in tasks}
        keys = sorted(k for k in (parts or {}) if k in outputs)
        arms = arms_for(keys)
        if parts is None or len(arms) == 1:  # one way to blend (a cold start's fallback)
            return self.base.decide(scores, batch)
        self.arms = arms
        parts = {k: np.asarray(v, dtype=float) for k, v in parts.items()}
        bucket = activity_bucket(batch.history.lengths if batch.history is not None
                                 else np.zeros(batch.n_requests))
        snapshot = self.probabilities(arms)
        cdf = np.cumsum(snapshot.table[bucket], axis=1)
        u = self._rng.random(batch.n_requests) * cdf[:, -1]
        drawn = np.minimum((u[:, None] >= cdf).sum(axis=1), len(arms) - 1)
        offline = sum(parts.values(), np.zeros(len(batch)))
        spread = _group_std(offline, batch.request, batch.n_requests)
        spread = spread if batch.n_requests == 1 else spread[batch.request]
        tilt = snapshot.settings.tilt
        if batch.n_requests == 1:  # serving: the drawn arm's terms; the others' sums only
            arm = arms[int(drawn[0])]
            terms = self._terms(parts, scores, batch, arm, spread, tilt)
            final = sum(terms.values(), np.zeros(len(batch)))
            contributions = {k: terms[k] for k in parts}
            kept, pull = offline * (1.0 - tilt), tilt * spread
            arm_scores = {a: final if a == arm else self._sum(offline, kept, pull, scores,
                                                                batch, a) for a in arms}
        else:
            every = {a: self._terms(parts, scores, batch, a, spread, tilt) for a in arms}
            arm_scores = {a: sum(t.values(), np.zeros(len(batch))) for a, t in every.items()}
            row_arm, rows = drawn[batch.request], np.arange(len(batch))
            final = np.stack([arm_scores[a] for a in arms])[row_arm, rows]
            contributions = {k: np.stack([every[a][k] for a in arms])[row_arm, rows]
                             for k in parts}
        return Blend(scores=final, contributions=contributions, policy=snapshot.policy,
                     arms=[arms[i] for i in drawn],
                     probabilities=[{a: float(p) for a, p in zip(arms, snapshot.table[b],
                                                                 strict=True)}
                                    for b in bucket],
                     arm_scores=arm_scores,
                     context=[{"activity": BUCKETS[b]} for b in bucket])

    def state(self, keys: list[str], history: tuple[int, list[dict[str, Any]]]
              ) -> dict[str, Any]:
        """What ``GET /v1/scenarios/{name}/policy`` shows: the arms and their multipliers,
        per activity bucket each arm's probability now and its counts, the offline prior
        (the bundle's blender), the number of rewards credited and the latest of them."""
        arms = self.arms or arms_for(keys)
        snapshot = self.probabilities(arms, fresh=True)
        settings, table = snapshot.settings, snapshot.table
        recent = self.store.policy_counts(self.version, self.scenario, settings.window)
        total = self.store.policy_counts(self.version, self.scenario)
        contexts = []
        for b, bucket in enumerate(BUCKETS):
            rows = []
            alpha, beta = posterior(*(np.array([recent.get((bucket, a), (0.0, 0.0))[i]
                                                for a in arms]) for i in (0, 1)))
            mean = alpha / (alpha + beta)
            for a, arm in enumerate(arms):
                rows.append({"arm": arm, "probability": round(float(table[b, a]), 6),
                             "mean": round(float(mean[a]), 6),
                             **_counts("window", recent.get((bucket, arm))),
                             **_counts("total", total.get((bucket, arm)))})
            contexts.append({"activity": bucket, "arms": rows})
        updates, latest = history
        return {"scenario": self.scenario, "bundle_version": self.version,
                "policy": snapshot.policy, "exploration": settings.exploration,
                "tilt": settings.tilt, "window": settings.window,
                "refresh_seconds": settings.refresh_seconds,
                "arms": [{"arm": a, "mix": mix(a, settings.tilt)} for a in arms],
                "contexts": contexts, "offline_prior": {"blender": self.base.name,
                                                        **self.base.describe()},
                "updates": updates, "history": latest}

    @staticmethod
    def _sum(offline: np.ndarray, kept: np.ndarray, pull: np.ndarray,
             scores: Mapping[str, Mapping[str, np.ndarray]], batch: ScoreBatch, arm: str
             ) -> np.ndarray:
        """What the terms of ``arm`` (``_terms``) add up to, without building them: the
        offline sum, or ``kept`` (its ``1 - tilt`` share) plus ``pull`` (the tilt times the
        spread) times the z-score ``arm`` tilts toward."""
        toward = _toward(scores, batch, arm)
        if toward is None:
            return offline
        return kept + pull * toward[1]

    @staticmethod
    def _terms(parts: Mapping[str, np.ndarray],
               scores: Mapping[str, Mapping[str, np.ndarray]], batch: ScoreBatch, arm: str,
               spread: np.ndarray, tilt: float) -> dict[str, np.ndarray]:
        toward = _toward(scores, batch, arm)
        if toward is None:
            return dict(parts)
        key, z = toward
        out = {k: v * (1.0 - tilt) for k, v in parts.items()}
        out[key] = out.get(key, 0.0) + tilt * spread * z
        return out


def _toward(scores: Mapping[str, Mapping[str, np.ndarray]], batch: ScoreBatch, arm: str
            ) -> tuple[str, np.ndarray] | None:
    """The output an arm tilts toward and its z-score over each request; None for the
    offline arm, or when that scorer was left out of this batch (no tilt toward it)."""
    if arm == OFFLINE:
        return None
    key = arm.removeprefix(TOWARD)
    values = scorer_output(scores, key)
    if values is None:
        return None
    return key, nan_to_zero(group_standardise(values, batch.request, batch.n_requests))


def _counts(label: str, counts: tuple[float, float] | None) -> dict[str, dict[str, float]]:
    pulls, reward = counts or (0.0, 0.0)
    return {label: {"pulls": pulls, "reward": reward}}


def _group_std(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Each group's standard deviation of ``values`` (1 where it is 0: a flat request)."""
    std = group_std(values, group, n_groups)
    return np.where(std > 0, std, 1.0)
