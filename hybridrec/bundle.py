"""Bundles: one trained version of every component, written once and switched to atomically.

Layout of ``bundles/<version>/``::

    manifest.json              data window, per-scenario plans and features, plugin versions,
                               parameters, metrics
    components/<name>/         one fitted component (a scorer, a candidate source, or both)
    blenders/<name>/           a fitted blender
    history.parquet            (user, item, scenario) pairs seen in the events the components
                               were fit on, with the last time
    sequences.parquet          each user's most recent events, when a component declares a
                               ``sequence_length``
    catalogue.parquet          item id and scenario of every item known at training time

``write_bundle`` builds the directory under a temporary name and renames it into place;
``bundles/current`` is a symlink to the live version, replaced with ``os.replace`` so a reader
sees the old version or the new one, never neither.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.contracts import Blender
from hybridrec.pipeline import ScenarioPlan

CURRENT = "current"
MANIFEST = "manifest.json"
HISTORY = "history.parquet"
SEQUENCES = "sequences.parquet"
CATALOGUE = "catalogue.parquet"


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


# Reading ---------------------------------------------------------------------------------

@dataclass
class Bundle:
    """A loaded bundle: components and blenders by name, the manifest and the data files."""

    path: Path
    manifest: dict[str, Any]
    components: dict[str, Any] = field(default_factory=dict)
    blenders: dict[str, Blender] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def plans(self) -> dict[str, ScenarioPlan]:
        return {name: ScenarioPlan.from_dict(p) for name, p in self.manifest["scenarios"].items()}

    @classmethod
    def load(cls, bundles: Path, version: str | None = None) -> Bundle:
        from hybridrec.plugins import get_registry

        path = resolve(bundles, version)
        bundle = cls(path=path, manifest=json.loads((path / MANIFEST).read_text()))
        registry = get_registry()
        for entry in bundle.manifest["components"]:
            registered = None
            for name in entry["names"]:
                registered = registry.scorers.get(name) or registry.candidate_sources.get(name)
                if registered is None:
                    raise BundleError(
                        f"bundle {bundle.version} needs component {name!r} ({entry['class']}, "
                        f"plugin {entry['plugin']!r}), which is not installed: install the "
                        "plugin again, or train a bundle without it (hybridrec train)")
            assert registered is not None
            instance = registered.load(path / "components" / entry["dir"])
            bundle.components.update(dict.fromkeys(entry["names"], instance))
        for name, entry in bundle.manifest["blenders"].items():
            blender = registry.blenders.get(name)
            if blender is None:
                raise BundleError(f"bundle {bundle.version} needs blender {name!r} "
                                  f"(plugin {entry['plugin']!r}), which is not installed")
            bundle.blenders[name] = blender.load(path / "blenders" / name)
        return bundle

    def history(self) -> Any:
        from hybridrec.data.tables import read_parquet

        return read_parquet(self.path / HISTORY)

    def sequences(self) -> Any:
        from hybridrec.data.tables import read_parquet

        path = self.path / SEQUENCES
        return read_parquet(path) if path.exists() else None

    def catalogue(self) -> Any:
        from hybridrec.data.tables import read_parquet

        return read_parquet(self.path / CATALOGUE)


# Writing ---------------------------------------------------------------------------------

@dataclass
class BundleContents:
    """Everything a training run hands over to be written."""

    plans: Mapping[str, ScenarioPlan]
    components: Mapping[str, Any]
    blenders: Mapping[str, Blender]
    history: Any
    catalogue: Any
    sequences: Any = None
    fit_seconds: Mapping[str, float] = field(default_factory=dict)
    manifest: Mapping[str, Any] = field(default_factory=dict)


def write_bundle(bundles: Path, version: str, contents: BundleContents) -> Path:
    """Write ``contents`` as ``bundles/<version>`` (built under a temporary name first)."""
    from hybridrec.plugins import get_registry

    registry = get_registry()
    bundles.mkdir(parents=True, exist_ok=True)
    staging = bundles / f".{version}.tmp"
    (staging / "components").mkdir(parents=True)
    (staging / "blenders").mkdir()
    names_of: dict[int, list[str]] = {}
    for name, obj in contents.components.items():
        names_of.setdefault(id(obj), []).append(name)
    components = []
    for names in names_of.values():
        obj = contents.components[names[0]]
        (staging / "components" / names[0]).mkdir()
        obj.save(staging / "components" / names[0])
        kind = "scorers" if names[0] in registry.scorers else "candidate_sources"
        components.append({"dir": names[0], "names": names, "class": class_path(type(obj)),
                           "plugin": registry.owner(kind, names[0]), "params": obj.describe(),
                           "fit_seconds": contents.fit_seconds.get(obj.name)})
    blenders = {}
    for name, blender in contents.blenders.items():
        (staging / "blenders" / name).mkdir()
        blender.save(staging / "blenders" / name)
        blenders[name] = {"class": class_path(type(blender)),
                          "plugin": registry.owner("blenders", name),
                          "params": blender.describe()}
    contents.history.to_parquet(staging / HISTORY, index=False)
    contents.catalogue.to_parquet(staging / CATALOGUE, index=False)
    if contents.sequences is not None:
        contents.sequences.to_parquet(staging / SEQUENCES, index=False)
    manifest = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        **contents.manifest,
        "scenarios": {n: p.as_dict() for n, p in contents.plans.items()},
        "components": components,
        "blenders": blenders,
        "plugins": {info.name: info.version for info in registry.plugins.values()},
        "python": sys.version.split()[0],
        "packages": _versions(("hybridrec", "feast", "numpy", "pandas")),
    }
    from hybridrec.metrics import json_safe

    (staging / MANIFEST).write_text(json.dumps(json_safe(manifest), indent=2, allow_nan=False,
                                               default=_json_default))
    final = bundles / version
    staging.rename(final)
    return final


def plugins_used(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Per plugin a bundle needs, what it needs of it (``component 'als'``, ``blender
    'learned'``)."""
    used: dict[str, list[str]] = {}
    for entry in manifest.get("components", ()):
        for name in entry["names"]:
            used.setdefault(entry["plugin"], []).append(f"component {name!r}")
    for name, entry in manifest.get("blenders", {}).items():
        used.setdefault(entry["plugin"], []).append(f"blender {name!r}")
    return used


def stored(bundles: Path) -> list[Path]:
    """The bundles stored in ``bundles``: folders with a manifest (not ``current`` or
    another link). OSError when the folder cannot be read."""
    return [p for p in bundles.iterdir()
            if p.is_dir() and not p.is_symlink() and (p / MANIFEST).exists()]


def prune(bundles: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` most recently created bundles (by their manifests'
    ``created_at``, not their names, which a copy or a rename can change), never the current
    one. A manifest that cannot be read counts as oldest."""
    import shutil

    def created(path: Path) -> str:
        try:
            return str(json.loads((path / MANIFEST).read_text()).get("created_at") or "")
        except (OSError, ValueError):
            return ""

    current = (bundles / CURRENT).resolve().name if (bundles / CURRENT).exists() else None
    versions = [p.name for p in sorted(stored(bundles), key=lambda p: (created(p), p.name))]
    removed = []
    for version in versions[:-keep] if keep else versions:
        if version != current:
            shutil.rmtree(bundles / version)
            removed.append(version)
    return removed


def _versions(names: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")
