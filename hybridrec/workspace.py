"""Where things live: the feature repository, its data, the bundles and the feedback log.

Defaults are relative to the working directory (``./feature_repo``, ``./bundles``);
``HYBRIDREC_FEATURE_REPO`` and ``HYBRIDREC_BUNDLES`` (or the CLI's ``--repo`` and
``--bundles``) override them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_REPO = "HYBRIDREC_FEATURE_REPO"
ENV_BUNDLES = "HYBRIDREC_BUNDLES"


@dataclass(frozen=True)
class Workspace:
    feature_repo: Path
    bundles: Path

    @classmethod
    def from_env(cls, repo: Path | str | None = None,
                 bundles: Path | str | None = None) -> Workspace:
        repo = Path(repo or os.environ.get(ENV_REPO) or "feature_repo")
        bundles = Path(bundles or os.environ.get(ENV_BUNDLES) or "bundles")
        return cls(feature_repo=repo.resolve(), bundles=bundles.resolve())

    @property
    def data_dir(self) -> Path:
        return self.feature_repo / "data"

    @property
    def feedback_db(self) -> Path:
        return self.data_dir / "feedback.db"
