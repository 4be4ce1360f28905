"""Stage 1, plan: which scenarios train and what each ranks with.

Names are resolved through the plugin registry and everything that can be checked before
fitting is checked here: the config tables, each scenario's scorers, candidate sources,
fallback and blender, and the blend inputs the blender's configuration names
(``make_plan``, before Feast is even imported, so a typo is reported at once); then the
features every component declares, against the applied Feast registry (``Plan.resolve``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from hybridrec import config as cfg
from hybridrec.contracts import Blender, Scenario
from hybridrec.features import FeatureError, FeatureSet, ViewInfo
from hybridrec.pipeline import ScenarioPlan, resolve_plans, sequence_length


class TrainingError(RuntimeError):
    """Training cannot proceed (no data, nothing applied in Feast, unknown names)."""


@dataclass
class Plan:
    """What one training run fits: per scenario its ``ScenarioPlan`` and resolved features,
    and the classes behind every component and blender name."""

    scenarios: dict[str, Scenario]
    plans: dict[str, ScenarioPlan]
    features: dict[str, FeatureSet]
    components: dict[str, type]
    blenders: dict[str, type]
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The instances planning built to ask ``supports`` and read declarations.
    probes: dict[str, Any] = field(default_factory=dict)
    blender_probes: dict[str, Blender] = field(default_factory=dict)

    def resolve(self, views: Mapping[str, ViewInfo]) -> Plan:
        """Check every declared feature against the applied registry's ``views``."""
        try:
            self.features = resolve_plans(views, self.scenarios, self.plans, self.probes,
                                          self.blender_probes)
        except FeatureError as exc:
            raise TrainingError(str(exc)) from None
        for name, features in self.features.items():
            self.plans[name].features = features.as_dict()
            by_view: dict[tuple[str, str], list[str]] = {}
            for ref in features.absent:
                by_view.setdefault((ref.view, ref.key), []).append(ref.feature)
            self.notes += [f"{name}: {view} ({', '.join(fields)}) is keyed by {key!r}, which "
                           f"items of {name!r} do not carry; always missing there"
                           for (view, key), fields in by_view.items()]
        return self

    def build(self) -> tuple[dict[str, Any], dict[str, Blender]]:
        """Fresh, unfitted components from their configuration: one instance per class,
        under every name it serves (popularity is a scorer and a candidate source at once)."""
        by_class: dict[type, Any] = {}
        for cls in self.components.values():
            if cls not in by_class:
                by_class[cls] = cfg.build(cls, self.config)
        components = {name: by_class[cls] for name, cls in self.components.items()}
        blenders = {name: cfg.build(cls, self.config) for name, cls in self.blenders.items()}
        return components, blenders

    @property
    def sequence_lengths(self) -> dict[str, int]:
        return {name: plan.sequence_length for name, plan in self.plans.items()}


def make_plan(registry: Any, scenarios: Iterable[str], only_scorers: Iterable[str] | None,
              config: Mapping[str, Mapping[str, Any]]) -> Plan:
    """Resolve and check everything but the features; raise TrainingError naming the first
    problem."""
    known = set(registry.scorers) | set(registry.candidate_sources) | set(registry.blenders)
    try:
        cfg.check_sections(config, known)
        choices = cfg.scenario_choices(config, set(registry.scenarios))
    except cfg.ConfigError as exc:
        raise TrainingError(str(exc)) from None
    wanted = set(only_scorers) if only_scorers else None
    if wanted and wanted - set(registry.scorers):
        raise TrainingError(f"unknown scorer(s) {', '.join(sorted(wanted - set(registry.scorers)))}"
                            f"; installed: {', '.join(sorted(registry.scorers))}")
    planner = _Planner(registry, config)
    plan = Plan(scenarios={}, plans={}, features={}, components={}, blenders={},
                config=config)
    for name in scenarios:
        settings = choices.get(name, {})
        scenario = replace(_lookup(registry, "scenarios", name), **settings)
        scenario_plan = planner.scenario(scenario, wanted, plan.notes)
        scenario_plan.settings = {k: v for k, v in settings.items()
                                  if k in cfg.SCENARIO_SETTINGS}
        blender = planner.instance(_lookup(registry, "blenders", scenario.blender))
        plan.blender_probes[scenario.blender] = blender
        scenario_plan.sequence_length = sequence_length(
            [*(planner.named(n) for n in scenario_plan.scorers), blender])
        plan.scenarios[name], plan.plans[name] = scenario, scenario_plan
        plan.blenders[scenario.blender] = type(blender)
    plan.components = planner.claimed
    plan.probes = {n: planner.named(n) for n in plan.components}
    _check_blend_inputs(plan, planner, registry)
    return plan


class _Planner:
    """Probe instances (for ``supports`` and the declarations) and name claims."""

    def __init__(self, registry: Any, config: Mapping[str, Mapping[str, Any]]) -> None:
        self.registry, self.config = registry, config
        self.instances: dict[type, Any] = {}
        self.claimed: dict[str, type] = {}

    def instance(self, cls: type) -> Any:
        if cls not in self.instances:
            try:
                self.instances[cls] = cfg.build(cls, self.config)
            except cfg.ConfigError as exc:
                raise TrainingError(str(exc)) from None
        return self.instances[cls]

    def named(self, name: str) -> Any:
        return self.instances[self.claimed[name]]

    def claim(self, name: str, cls: type) -> None:
        other = self.claimed.setdefault(name, cls)
        if other is not cls:
            raise TrainingError(f"the name {name!r} is used by two different components "
                                f"({other.__module__}.{other.__qualname__} and "
                                f"{cls.__module__}.{cls.__qualname__}); rename one of them")

    def pick(self, kind: str, listed: tuple[str, ...] | None, scenario: Scenario,
             wanted: set[str] | None, notes: list[str]) -> list[str]:
        """The installed components of ``kind`` the scenario lists (all when None) that
        support it."""
        registered = self.registry.kind(kind)
        chosen = []
        for name in listed if listed is not None else tuple(registered):
            label = kind.rstrip("s").replace("_", " ")
            if name not in registered:
                notes.append(f"scenario {scenario.name!r} lists {label} {name!r}, not installed")
            elif (wanted is None or name in wanted) and self.instance(
                    registered[name]).supports(scenario):
                self.claim(name, registered[name])
                chosen.append(name)
        return chosen

    def scenario(self, scenario: Scenario, wanted: set[str] | None,
                 notes: list[str]) -> ScenarioPlan:
        scorers = self.pick("scorers", scenario.scorers, scenario, wanted, notes)
        if not scorers:
            if wanted:
                applies = sorted(n for n, cls in self.registry.scorers.items()
                                 if self.instance(cls).supports(scenario))
                raise TrainingError(
                    f"none of the scorers chosen with --scorer ({', '.join(sorted(wanted))}) "
                    f"applies to scenario {scenario.name!r}; installed ones that do: "
                    f"{', '.join(applies) or 'none'}")
            raise TrainingError(f"no installed scorer applies to scenario {scenario.name!r}")
        sources = self.pick("candidate_sources", scenario.candidate_sources, scenario, None,
                            notes)
        if not sources:
            raise TrainingError(f"no installed candidate source for scenario {scenario.name!r}")
        fallback = scenario.fallback
        if fallback is not None:
            cls = self.registry.scorers.get(fallback)
            if cls is None or self.registry.candidate_sources.get(fallback) is not cls:
                raise TrainingError(
                    f"scenario {scenario.name!r} falls back to {fallback!r} for cold starts, "
                    "which is not installed as both a scorer and a candidate source")
            if not self.instance(cls).supports(scenario):
                raise TrainingError(f"scenario {scenario.name!r} falls back to {fallback!r} "
                                    "for cold starts, which does not support it")
            self.claim(fallback, cls)
        return ScenarioPlan(scorers=scorers, candidate_sources=sources,
                            blender=scenario.blender, fallback=fallback,
                            objective_value=scenario.objective_value)


def _lookup(registry: Any, kind: str, name: str) -> Any:
    try:
        return registry.get(kind, name)
    except KeyError as exc:
        raise TrainingError(str(exc.args[0])) from None


def _check_blend_inputs(plan: Plan, planner: _Planner, registry: Any) -> None:
    """Each blender is told the ``scorer.task`` keys of every scenario: exactly those of the
    scenarios it blends in this run, and every installed scorer's for the others (so a typo
    under a scenario not trained this time is caught too). A blender that is configured but
    blends nothing this run is checked as if it blended every scenario trained."""
    installed = [f"{name}.{task}" for name, cls in registry.scorers.items() for task in cls.tasks]
    configured = {name: registry.blenders[name] for name in plan.config
                  if name in registry.blenders and name not in plan.blenders}
    plan.notes += [f"[{name}] is configured but blends none of the scenarios trained; choose it "
                   f"with [scenarios.NAME] blender = \"{name}\"" for name in configured]
    for blender_name, cls in {**plan.blenders, **configured}.items():
        inputs = {name: installed for name in registry.scenarios}
        for name, p in plan.plans.items():
            if p.blender == blender_name or blender_name in configured:
                inputs[name] = [f"{s}.{t}" for s in p.readers()
                                for t in planner.named(s).tasks]
            else:
                inputs.pop(name)
        try:
            planner.instance(cls).check(inputs, set(registry.scenarios))
        except ValueError as exc:
            raise TrainingError(f"invalid config for [{blender_name}]: {exc}") from None
