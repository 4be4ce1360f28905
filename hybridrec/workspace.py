"""Where things live: the feature repository, its data, the bundles, and the feedback log with
the adaptive state.

Defaults are relative to the working directory (``./feature_repo``, ``./bundles``);
``HYBRIDREC_FEATURE_REPO`` and ``HYBRIDREC_BUNDLES`` (or the CLI's ``--repo`` and
``--bundles``) override them. The feedback log and the adaptive state live in the feature
repository's ``data/feedback.db`` (SQLite) unless ``HYBRIDREC_STATE_URL`` names a Redis server
(``redis://HOST:PORT/DB``, ``rediss://`` or ``unix://``), which several server replicas then
share; ``HYBRIDREC_STATE_PREFIX`` (default ``hybridrec``) prefixes every key there, so that one
Redis can hold several deployments. A server deletes the log's served rows after
``HYBRIDREC_SERVED_RETENTION_DAYS`` (``hybridrec serve --served-retention-days``, 30; 0 keeps
them).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ENV_REPO = "HYBRIDREC_FEATURE_REPO"
ENV_BUNDLES = "HYBRIDREC_BUNDLES"
ENV_STATE_URL = "HYBRIDREC_STATE_URL"
ENV_STATE_PREFIX = "HYBRIDREC_STATE_PREFIX"
DEFAULT_STATE_PREFIX = "hybridrec"
ENV_SERVED_RETENTION = "HYBRIDREC_SERVED_RETENTION_DAYS"
#: How long a server keeps served rows, in days (0: forever), and the most it accepts.
DEFAULT_SERVED_RETENTION_DAYS, MAX_SERVED_RETENTION_DAYS = 30.0, 36_500.0
ENV_SCORING_THREADS = "HYBRIDREC_SCORING_THREADS"
#: Recommendations one server process computes at once, and the most it accepts.
DEFAULT_SCORING_THREADS, MAX_SCORING_THREADS = 4, 256
ENV_EXPLORATION_SEED = "HYBRIDREC_EXPLORATION_SEED"


def _whole_number(value: str | int | None, name: str, low: int, high: int | None,
                  default: int | None) -> int | None:
    """A whole number from ``value`` (None or blank: ``default``); anything else outside
    ``low`` to ``high`` (None: no upper bound) is a ValueError naming ``name``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        span = f"from {low} to {high}" if high is not None else f"from {low} up"
        raise ValueError(f"{name} must be a whole number {span}, got {value!r}")
    return number


def scoring_threads(value: str | int | None, name: str = ENV_SCORING_THREADS) -> int:
    """How many recommendations a server process computes at once, from ``value`` (None or
    blank: the default); anything but a whole number from 1 to ``MAX_SCORING_THREADS`` is
    a ValueError naming ``name``."""
    threads = _whole_number(value, name, 1, MAX_SCORING_THREADS, DEFAULT_SCORING_THREADS)
    assert threads is not None
    return threads


def exploration_seed(value: str | int | None, name: str = ENV_EXPLORATION_SEED
                     ) -> int | None:
    """The seed of a server's exploration draws from ``value`` (None or blank: unseeded); a
    value that is not a whole number from 0 up is a ValueError naming ``name``."""
    return _whole_number(value, name, 0, None, None)


def served_retention_days(value: str | float | None,
                          name: str = ENV_SERVED_RETENTION) -> float:
    """The served rows' retention in days from ``value`` (None or blank: the default); a
    value that is not a number from 0 to ``MAX_SERVED_RETENTION_DAYS`` is a ValueError
    naming ``name``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_SERVED_RETENTION_DAYS
    try:
        days = float(value)
    except ValueError:
        days = math.nan
    if not 0 <= days <= MAX_SERVED_RETENTION_DAYS:  # also NaN
        raise ValueError(f"{name} must be a number of days from 0 (served rows kept "
                         f"forever) to {MAX_SERVED_RETENTION_DAYS:g}, got {value!r}")
    return days


@dataclass(frozen=True)
class Workspace:
    feature_repo: Path
    bundles: Path
    #: A Redis URL for the feedback log and the adaptive state; None: the SQLite file.
    state_url: str | None = None
    state_prefix: str = DEFAULT_STATE_PREFIX

    @classmethod
    def from_env(cls, repo: Path | str | None = None,
                 bundles: Path | str | None = None) -> Workspace:
        repo = Path(repo or os.environ.get(ENV_REPO) or "feature_repo")
        bundles = Path(bundles or os.environ.get(ENV_BUNDLES) or "bundles")
        return cls(feature_repo=repo.resolve(), bundles=bundles.resolve(),
                   state_url=os.environ.get(ENV_STATE_URL) or None,
                   state_prefix=os.environ.get(ENV_STATE_PREFIX) or DEFAULT_STATE_PREFIX)

    @property
    def data_dir(self) -> Path:
        return self.feature_repo / "data"

    @property
    def feedback_db(self) -> Path:
        """The SQLite feedback log (used when no state URL is set)."""
        return self.data_dir / "feedback.db"

    @property
    def feedback_location(self) -> str:
        """Where the feedback log is, for messages: the SQLite file, or the Redis server
        (without its password) and the key prefix."""
        if self.state_url:
            return f"{redact_url(self.state_url)} (keys {self.state_prefix}:*)"
        return str(self.feedback_db)


def redact_url(url: str) -> str:
    """``url`` without its password, to name it in messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
