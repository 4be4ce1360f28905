"""Plugin loading and the registry of everything plugins register.

Built-in plugins go through the same hooks as installed ones. Installed plugins are the entry
points of group ``hybridrec``; ``HYBRIDREC_LOAD_PLUGINS`` (comma-separated entry-point or
distribution names, empty for none) restricts which of them load. A plugin that fails to import
or registers a name that is already taken is reported with its name and the name in question,
and the others still load; strict mode (``HYBRIDREC_STRICT_PLUGINS=1`` or ``--strict``) turns
any such problem into a ``PluginError``.

Claim order. Registry hooks are not called through pluggy's call loop: hybridrec calls each
plugin's implementation itself, in a fixed order, so the first plugin to register a name keeps
it. The order is: built-ins (in ``BUILTIN_PLUGINS`` order), then installed plugins sorted by
entry-point name, then plugins passed in code (``build_registry(extra=...)``). pluggy's
``tryfirst``/``trylast`` change nothing here (taking a name that is already registered needs an
explicit ``register(obj, replace=True)``), and ``wrapper``/``hookwrapper`` implementations of a
registry hook are reported as problems and never called. An ``@hookimpl`` whose name is not a
hook (``register_scorer`` for ``register_scorers``) is reported too, with the likely hook.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from hybridrec import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hybridrec"
ENV_LOAD_PLUGINS = "HYBRIDREC_LOAD_PLUGINS"
ENV_STRICT = "HYBRIDREC_STRICT_PLUGINS"

BUILTIN_PLUGINS = (
    "hybridrec.builtin.features",
    "hybridrec.builtin.scenarios",
    "hybridrec.builtin.popularity",
    "hybridrec.builtin.ease",
    "hybridrec.builtin.blenders",
    "hybridrec.builtin.learned",
)

#: Registry kind -> the hook that fills it.
KINDS = {
    "scorers": "register_scorers",
    "scenarios": "register_scenarios",
    "candidate_sources": "register_candidate_sources",
    "blenders": "register_blenders",
    "feature_definitions": "register_feature_definitions",
    "derived_tables": "register_derived_tables",
    "synthetic_scenarios": "register_synthetic_scenarios",
}


class PluginError(RuntimeError):
    """A plugin could not be loaded or registered something invalid (strict mode)."""


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: The distribution that installed it (None for built-ins and plugins passed in code).
    dist: str | None = None

    def report(self, problem: str) -> None:
        self.problems.append(problem)
        log.warning(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "registered": {k: v for k, v in self.registered.items() if v},
            "problems": self.problems,
            "distribution": self.dist,
        }


def _validate(kind: str, obj: Any) -> str:
    """Check ``obj`` fits ``kind`` and return its registry name; raise TypeError otherwise."""
    from hybridrec import contracts

    expected: dict[str, type] = {
        "scorers": contracts.Scorer,
        "candidate_sources": contracts.CandidateSource,
        "blenders": contracts.Blender,
        "derived_tables": contracts.DerivedTable,
        "synthetic_scenarios": contracts.SyntheticScenario,
    }
    if kind in expected:
        base = expected[kind]
        if not (isinstance(obj, type) and issubclass(obj, base)):
            raise TypeError(f"{obj!r} is not a subclass of {base.__module__}.{base.__name__}")
    elif kind == "scenarios" and not isinstance(obj, contracts.Scenario):
        raise TypeError(f"{obj!r} is not a hybridrec.contracts.Scenario")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{obj!r} has no 'name' string attribute")
    return name


class Registry:
    """Everything the loaded plugins registered, keyed by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
        self.pm = pm
        self.plugins = infos  # in claim order: built-ins, installed by name, then extras
        self._items: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._collected: set[str] = set()
        self._lock = threading.RLock()  # server threads may ask for a kind at the same time

    def kind(self, kind: str) -> dict[str, Any]:
        """Everything registered under ``kind``; its hook runs on first use."""
        if kind in self._collected:
            return self._items[kind]
        with self._lock:
            if kind not in self._collected:
                extra = {"repo_path": None} if kind == "feature_definitions" else {}
                self._collect(kind, **extra)
                self._collected.add(kind)  # only once filled: readers never see it half-built
        return self._items[kind]

    # Convenience views ------------------------------------------------------------------
    @property
    def scorers(self) -> dict[str, Any]:
        return self.kind("scorers")

    @property
    def scenarios(self) -> dict[str, Any]:
        return self.kind("scenarios")

    @property
    def candidate_sources(self) -> dict[str, Any]:
        return self.kind("candidate_sources")

    @property
    def blenders(self) -> dict[str, Any]:
        return self.kind("blenders")

    @property
    def feature_definitions(self) -> dict[str, Any]:
        return self.kind("feature_definitions")

    @property
    def problems(self) -> list[str]:
        """Every problem so far, after running every registry hook."""
        self.collect_all()
        return [p for info in self.plugins.values() for p in info.problems]

    def get(self, kind: str, name: str) -> Any:
        """Look ``name`` up in ``kind``; the KeyError lists what is known."""
        try:
            return self.kind(kind)[name]
        except KeyError:
            known = ", ".join(sorted(self._items[kind])) or "none"
            label = kind.rstrip("s").replace("_", " ")
            raise KeyError(f"unknown {label} {name!r}; known: {known}") from None

    def owner(self, kind: str, name: str) -> str:
        """The plugin that registered ``name`` under ``kind``."""
        self.kind(kind)
        for info in self.plugins.values():
            if name in info.registered.get(kind, ()):
                return info.name
        raise KeyError(f"nothing registered {kind} {name!r}")

    def collect_all(self) -> None:
        for kind in KINDS:
            self.kind(kind)

    def as_dict(self, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every plugin with what it registered under ``kinds`` (all when None; running the
        feature-definition hooks imports Feast)."""
        kinds = list(KINDS) if kinds is None else list(kinds)
        for kind in kinds:
            self.kind(kind)
        out = []
        for info in self.plugins.values():
            entry = info.as_dict()
            entry["registered"] = {k: v for k, v in entry["registered"].items() if k in kinds}
            out.append(entry)
        return out

    # Filling ----------------------------------------------------------------------------
    def _add(self, kind: str, plugin: str, obj: Any, replace: bool, target: dict[str, Any],
             owners: dict[str, str], record: bool) -> None:
        info = self.plugins[plugin]
        try:
            name = _validate(kind, obj)
        except TypeError as exc:
            if record:
                info.report(f"plugin {plugin!r} registered an invalid {kind} entry: {exc}")
            return
        owner = owners.get(name)
        if owner is not None and not replace:
            if record:
                info.report(
                    f"plugin {plugin!r} registered {kind} name {name!r}, which plugin "
                    f"{owner!r} already registered; kept {owner!r}'s (pass replace=True to "
                    "override)"
                )
            return
        target[name] = obj
        owners[name] = plugin
        if record:
            _warn_deprecated_methods(plugin, obj)
            if owner is not None:
                self.plugins[owner].registered[kind].remove(name)
            info.registered.setdefault(kind, []).append(name)

    def _impls(self, hook_name: str, record: bool) -> Iterable[Any]:
        """The hook's implementations in claim order (see the module docstring), never in
        pluggy's call order, which puts ``trylast`` implementations first."""
        by_plugin = {impl.plugin_name: impl for impl in
                     getattr(self.pm.hook, hook_name).get_hookimpls()}
        for name in self.plugins:
            impl = by_plugin.get(name)
            if impl is None:
                continue
            if impl.wrapper or impl.hookwrapper:
                if record:
                    self.plugins[name].report(
                        f"plugin {name!r} implements {hook_name} as a wrapper; registry hooks "
                        "take no wrappers, so it was not called")
                continue
            yield impl

    def _collect(self, kind: str, into: dict[str, Any] | None = None, **kwargs: Any) -> None:
        hook_name = KINDS[kind]
        target = self._items[kind] if into is None else into
        owners: dict[str, str] = {}
        record = into is None  # only the cached pass records registrations and problems
        for impl in self._impls(hook_name, record):
            plugin = impl.plugin_name

            def register(obj: Any, *, replace: bool = False, _p: str = plugin) -> None:
                self._add(kind, _p, obj, replace, target, owners, record)

            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            _call_impl(self.plugins[plugin], hook_name, impl.function, record,
                       register=register, **args)

    def feature_definitions_for(self, repo_path: Path) -> dict[str, Any]:
        """Feast objects with data-source paths resolved against ``repo_path`` (not cached)."""
        self.kind("feature_definitions")  # problems are reported once, by the cached pass
        out: dict[str, Any] = {}
        self._collect("feature_definitions", into=out, repo_path=Path(repo_path).resolve())
        return out

    def add_commands(self, cli: Any) -> None:
        for impl in self._impls("register_commands", True):
            _call_impl(self.plugins[impl.plugin_name], "register_commands", impl.function,
                       True, cli=cli)


def _call_impl(info: PluginInfo, hook: str, function: Callable[..., Any], record: bool,
               **kwargs: Any) -> None:
    try:
        function(**kwargs)
    except Exception as exc:  # a plugin bug must not take the others down
        if record:
            info.report(f"plugin {info.name!r} failed in {hook}: {type(exc).__name__}: {exc}")


def _allowed_plugins() -> set[str] | None:
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def build_registry(strict: bool | None = None,
                   extra: Iterable[tuple[str, object]] = ()) -> Registry:
    """Load built-in and installed plugins, then ``extra`` ``(name, module)`` pairs (plugins
    defined in code, for tests and embedding), and collect what they register."""
    if strict is None:
        strict = os.environ.get(ENV_STRICT, "").lower() in {"1", "true", "yes"}
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    from hybridrec import __version__

    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
        infos[module_name] = PluginInfo(module_name, __version__, module_name, builtin=True)

    allowed = _allowed_plugins()
    for ep in sorted(_entry_points(), key=lambda ep: (ep.name, ep.value)):
        dist = ep.dist
        dist_name = dist.name if dist is not None else None
        if allowed is not None and ep.name not in allowed and dist_name not in allowed:
            continue
        if ep.name in infos:
            # Two distributions may not claim one plugin name; the later one is reported.
            infos[ep.name].report(
                f"plugin name {ep.name!r} is claimed twice (also by distribution {dist_name!r}); "
                "the second was not loaded"
            )
            continue
        info = PluginInfo(ep.name, dist.version if dist is not None else None, ep.value,
                          builtin=False, dist=dist_name)
        infos[ep.name] = info
        try:
            module = ep.load()
        except Exception as exc:
            info.report(
                f"plugin {ep.name!r} (distribution {dist_name!r}, {ep.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            )
            continue
        if _api_compatible(info, dist_name, module):
            pm.register(module, name=ep.name)
    for name, plugin in extra:
        pm.register(plugin, name=name)
        infos[name] = PluginInfo(name, None, getattr(plugin, "__name__", name), builtin=False)
    _report_unknown_hooks(pm, infos)
    _warn_deprecated_hooks(pm, infos)
    registry = Registry(pm, infos)
    if strict:
        registry.collect_all()
        if registry.problems:
            raise PluginError("; ".join(registry.problems))
    return registry


def _api_compatible(info: PluginInfo, dist_name: str | None, module: Any) -> bool:
    """Whether the plugin's declared range of plugin API versions admits this one; a plugin
    that declares none is loaded and reported, one that declares another range refused."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    who = f"plugin {info.name!r} ({dist_name or 'no distribution'} {info.version or ''})"
    declared = getattr(module, hookspecs.API_ATTRIBUTE, None)
    example = f'{hookspecs.API_ATTRIBUTE} = "{hookspecs.api_range()}"'
    if declared is None:
        info.report(f"{who} declares no plugin API versions; loaded as if it works with "
                    f"hybridrec's plugin API {hookspecs.PLUGIN_API} (add {example} to "
                    f"{getattr(module, '__name__', info.module)})")
        return True
    try:
        versions = SpecifierSet(str(declared))
        if not str(declared).strip():
            raise InvalidSpecifier("empty")  # it would admit every version
    except InvalidSpecifier:
        info.report(f"{who} declares {hookspecs.API_ATTRIBUTE} = {declared!r}, which is not "
                    f"a version range (such as {example}); not loaded")
        return False
    if versions.contains(hookspecs.PLUGIN_API):
        return True
    from hybridrec import __version__

    info.report(f"{who} works with plugin API {declared}, and this hybridrec {__version__} "
                f"provides plugin API {hookspecs.PLUGIN_API}; not loaded (install a version "
                f"of {dist_name or info.name} made for plugin API {hookspecs.PLUGIN_API}, or "
                f"a hybridrec whose plugin API it declares)")
    return False


#: (plugin, what) pairs already warned about: each deprecation warns once per plugin.
_warned: set[tuple[str, str]] = set()


def _deprecated(plugin: str, what: str, advice: str) -> None:
    import warnings

    if (plugin, what) in _warned:
        return
    _warned.add((plugin, what))
    message = f"plugin {plugin!r} uses {what}, which is deprecated: {advice}"
    log.warning(message)
    warnings.warn(message, FutureWarning, stacklevel=3)


def _warn_deprecated_hooks(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    for hook, advice in hookspecs.DEPRECATED_HOOKS.items():
        caller = getattr(pm.hook, hook, None)
        for impl in caller.get_hookimpls() if caller is not None else ():
            if impl.plugin_name in infos:
                _deprecated(impl.plugin_name, f"the hook {hook!r}", advice)


def _warn_deprecated_methods(plugin: str, obj: Any) -> None:
    """A registered class that defines a deprecated contract method, named once."""
    from hybridrec import contracts

    for (contract, method), advice in contracts.DEPRECATED_METHODS.items():
        base = getattr(contracts, contract, None)
        if not (isinstance(obj, type) and isinstance(base, type) and issubclass(obj, base)):
            continue
        if any(method in vars(cls) for cls in obj.__mro__ if not issubclass(base, cls)):
            _deprecated(plugin, f"{contract}.{method} (in {obj.__name__})", advice)


def _report_unknown_hooks(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    """An ``@hookimpl`` with no matching hook is never called: say so, with the likely hook
    (what ``pm.check_pending()`` finds, reported per plugin instead of raised)."""
    known = sorted(name for name in vars(hookspecs) if name.startswith("register_"))
    for name, caller in vars(pm.hook).items():
        if getattr(caller, "spec", True) is not None:
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            guess = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {guess[0]!r}?)" if guess else ""
            infos[impl.plugin_name].report(
                f"plugin {impl.plugin_name!r} implements {name!r}, which is not a hybridrec "
                f"hook{hint}; it is never called")


def uninstalled(plugins: Iterable[str]) -> list[str]:
    """Those of ``plugins`` (names this process loaded from installed distributions) whose
    entry point is no longer installed."""
    loaded = get_registry().plugins
    present = {ep.name for ep in _entry_points()}  # read afresh, not the registry's
    return [p for p in plugins
            if p in loaded and loaded[p].dist is not None and p not in present]


def replaced(plugins: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Those of ``plugins`` (names this process loaded from installed distributions) whose
    distribution is now installed at another version: ``{plugin: (loaded, installed)}``.
    This process still runs the version it loaded; the next one loads the other, or refuses
    it (a version made for another plugin API)."""
    loaded = get_registry().plugins
    out = {}
    for name in plugins:
        info = loaded.get(name)
        if info is None or info.dist is None:
            continue
        try:
            installed = metadata.version(info.dist)
        except metadata.PackageNotFoundError:  # uninstalled: ``uninstalled`` says so
            continue
        if installed != info.version:
            out[name] = (info.version or "unknown", installed)
    return out


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry(strict: bool | None = None) -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        with _registry_lock:
            if _registry is None:
                _registry = build_registry(strict=strict)
                return _registry
    if strict and _registry.problems:
        raise PluginError("; ".join(_registry.problems))
    return _registry


def reset_registry() -> None:
    """Forget the cached registry (tests, and after installing a plugin in-process)."""
    global _registry
    _registry = None
