"""Bundles: one trained version of every component, written once and switched to atomically.

Layout of ``bundles/<version>/``::

    manifest.json              data window, feature refs, plugin versions, params, metrics
    components/<dir>/          one fitted component (a scorer, a candidate source, or both)
    blenders/<name>/           a fitted blender
    history.parquet            (user, item, scenario) pairs seen in the training window
    catalogue.parquet          item id and scenario of every item known at training time

``bundles/current`` is a symlink to the live version, replaced with ``os.replace`` so a reader
sees the old version or the new one, never neither.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridrec.contracts import Blender, CandidateSource, Scorer

CURRENT = "current"
MANIFEST = "manifest.json"


class BundleError(RuntimeError):
    """A bundle is missing, incomplete, or needs a plugin that is not installed."""


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def switch_current(bundles: Path, version: str) -> None:
    """Point ``bundles/current`` at ``version`` atomically."""
    tmp = bundles / f".{CURRENT}.{secrets.token_hex(4)}"
    os.symlink(version, tmp)
    os.replace(tmp, bundles / CURRENT)


def resolve(bundles: Path, version: str | None = None) -> Path:
    """The directory of ``version``, or of the current bundle."""
    path = bundles / (version or CURRENT)
    if not (path / MANIFEST).is_file():
        what = f"bundle {version!r}" if version else "a current bundle"
        raise BundleError(f"{bundles} has no {what}; run 'hybridrec train' first")
    return path.resolve()


@dataclass
class Bundle:
    """A loaded bundle: components by role and name, blenders, manifest and the seen pairs."""

    path: Path
    manifest: dict[str, Any]
    scorers: dict[str, Scorer] = field(default_factory=dict)
    candidate_sources: dict[str, CandidateSource] = field(default_factory=dict)
    blenders: dict[str, Blender] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @classmethod
    def load(cls, bundles: Path, version: str | None = None) -> Bundle:
        from hybridrec.plugins import get_registry

        path = resolve(bundles, version)
        manifest = json.loads((path / MANIFEST).read_text())
        registry = get_registry()
        bundle = cls(path=path, manifest=manifest)
        for comp in manifest["components"]:
            instance = None
            for kind, names in comp["roles"].items():
                for name in names:
                    registered = registry.kind(kind).get(name)
                    if registered is None:
                        raise BundleError(
                            f"bundle {bundle.version} needs {kind} {name!r} "
                            f"({comp['class']}, plugin {comp['plugin']!r}), which is not "
                            "installed"
                        )
                    if instance is None:
                        instance = registered.load(path / "components" / comp["dir"])
                    getattr(bundle, kind)[name] = instance
        for name, entry in manifest["blenders"].items():
            registered = registry.kind("blenders").get(name)
            if registered is None:
                raise BundleError(f"bundle {bundle.version} needs blender {name!r} "
                                  f"(plugin {entry['plugin']!r}), which is not installed")
            bundle.blenders[name] = registered.load(path / "blenders" / name)
        return bundle

    def history(self) -> Any:
        import pandas as pd

        return pd.read_parquet(self.path / "history.parquet")

    def catalogue(self) -> Any:
        import pandas as pd

        return pd.read_parquet(self.path / "catalogue.parquet")
