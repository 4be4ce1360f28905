"""Hook specifications: everything a plugin can add to hybridrec.

Every registry hook receives a ``register`` callback and calls it once per object it adds;
hooks do not return lists. A name registered twice is an error that names both plugins, unless
the second call passes ``replace=True``. Hooks run once, when the plugin registry is first
built (``hybridrec.plugins.get_registry()``), never at import time.

hybridrec calls the implementations itself, in claim order: built-ins first, then installed
plugins sorted by entry-point name. ``tryfirst`` and ``trylast`` change nothing here (the
first to register a name keeps it; take one over with ``replace=True``); a ``wrapper`` or
``hookwrapper`` implementation of these hooks is reported and not called; an ``@hookimpl``
whose name is no hook below is reported with the hook it most resembles.

A plugin is a module with ``@hookimpl`` functions and one entry point in the group
``hybridrec``::

    [project.entry-points.hybridrec]
    my_plugin = "my_package.plugin"

and it names the versions of the plugin API it works with in that module::

    HYBRIDREC_PLUGIN_API = ">=1.0,<2"

The plugin API (``PLUGIN_API``) is these hooks and the contracts of ``hybridrec.contracts``.
Its minor version grows with additions a plugin may ignore (a hook, a contract method with a
default); its major version with changes that can break a plugin. A plugin whose range
excludes this ``PLUGIN_API`` is refused at load with a message naming it, its version and
both versions; one that declares nothing is loaded and reported. A hook in
``DEPRECATED_HOOKS`` or a contract method in ``hybridrec.contracts.DEPRECATED_METHODS`` that
a plugin still implements is named in one warning per plugin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click

PROJECT_NAME = "hybridrec"

#: The plugin API's version (see the module).
PLUGIN_API = "1.1"
#: The attribute of a plugin's entry-point module that names the API versions it works with.
API_ATTRIBUTE = "HYBRIDREC_PLUGIN_API"


def api_range() -> str:
    """The range a plugin made for this ``PLUGIN_API`` declares: this version up to the
    next major one."""
    return f">={PLUGIN_API},<{int(PLUGIN_API.split('.')[0]) + 1}"


#: Deprecated hooks: name -> what to do instead.
DEPRECATED_HOOKS: dict[str, str] = {}

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: ``register(obj, *, replace=False)``: the callback every registry hook receives.
Register = Callable[..., None]


@hookspec
def register_scorers(register: Register) -> None:
    """Register ``Scorer`` subclasses, one ``register(cls)`` call each (keyed by ``cls.name``)."""


@hookspec
def register_scenarios(register: Register) -> None:
    """Register ``Scenario`` instances (keyed by ``scenario.name``)."""


@hookspec
def register_candidate_sources(register: Register) -> None:
    """Register ``CandidateSource`` subclasses (keyed by ``cls.name``)."""


@hookspec
def register_blenders(register: Register) -> None:
    """Register ``Blender`` subclasses (keyed by ``cls.name``)."""


@hookspec
def register_feature_definitions(register: Register, repo_path: Path | None) -> None:
    """Register Feast objects (entities, data sources, feature views, feature services).

    Keyed by the object's name. ``feature_repo/definitions.py`` binds them as module
    attributes, so a plain ``feast apply`` inside ``feature_repo/`` picks them up.
    ``repo_path`` is the feature repository's absolute path (None when only the names are
    wanted): make file-source paths absolute against it, because Feast's DuckDB offline store
    resolves relative paths against the working directory, not the repository.
    """


@hookspec
def register_derived_tables(register: Register) -> None:
    """Register ``DerivedTable`` subclasses (keyed by ``cls.name``): feature tables that every
    data command derives from the event log and writes beside the core's tables. Register
    the Feast view that reads one with ``register_feature_definitions``."""


@hookspec
def register_synthetic_scenarios(register: Register) -> None:
    """Register ``SyntheticScenario`` subclasses (keyed by ``cls.name``, the scenario they
    generate): ``hybridrec data synthetic`` adds their items and events to the embedded world.
    Added in plugin API 1.1."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``hybridrec`` CLI group (``@cli.command()``)."""

