"""Training and offline evaluation, in stages: plan -> data -> fit -> evaluate -> write bundle.

``run`` reads the event log, plans (``training.plan``), joins the declared features from Feast
point-in-time correctly and splits time (``training.data``), fits every component on the
training part (``training.fit``), evaluates through the serving pipeline
(``hybridrec.evaluation``), refits on the whole window and writes a bundle that becomes
``current`` (``hybridrec.bundle``). ``evaluate_bundle`` evaluates a stored bundle on the split
it records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from hybridrec import columns as C
from hybridrec import history as H
from hybridrec.bundle import Bundle, BundleContents, new_version, switch_current, write_bundle
from hybridrec.contracts import BlendExamples, TrainingData
from hybridrec.evaluation import Evaluation, blend_examples, evaluate
from hybridrec.training.data import (
    Inputs,
    Split,
    fingerprint,
    load_inputs,
    scenario_names,
    split_at,
    temporal_split,
    training_data,
)
from hybridrec.training.fit import fit_blenders, fit_components, write_features
from hybridrec.training.plan import Plan, TrainingError, make_plan
from hybridrec.workspace import Workspace

__all__ = ["TrainResult", "TrainingError", "evaluate_bundle", "run"]


@dataclass
class TrainResult:
    version: str | None
    path: Path | None
    metrics: dict[str, dict[str, dict[str, float]]]
    notes: list[str]
    lists: dict[str, Any] = field(default_factory=dict)
    importance: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def run(ws: Workspace, scenarios: Iterable[str] | None = None,
        only_scorers: Iterable[str] | None = None, test_fraction: float = 0.1, k: int = 10,
        refit: bool = True, write: bool = True,
        config: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = True,
        keep_lists: bool = False, blend_fraction: float = 0.1) -> TrainResult:
    """Fit, evaluate and (with ``write``) save a bundle and make it current.

    Time is split in two, or in three when a blender learns from scores: the latest
    ``test_fraction`` of events is the test slice, and before it the latest
    ``blend_fraction`` is the blend slice. The scorers are fit on what precedes the blend
    slice and score it; the blenders learn from those scores; the scorers are then fit again
    on everything before the test slice and evaluated on it with those blenders. Refitting
    (``refit``) fits the scorers on the whole window and keeps the blenders, which never see
    a test label."""
    from hybridrec.features import applied_views, open_store
    from hybridrec.plugins import get_registry

    inputs = load_inputs(ws)
    names = scenario_names(inputs, scenarios)
    plan = make_plan(get_registry(), names, only_scorers, config or {})
    store = open_store(ws.feature_repo)
    plan.resolve(applied_views(store))
    events = inputs.events[inputs.events[C.SCENARIO].isin(names)]
    full = training_data(store, events, inputs, plan, progress)
    split = temporal_split(full.events, test_fraction)
    components, blenders = plan.build()
    train = replace(full, events=split.train)
    blend_cutoff = None
    if any(b.learns for b in blenders.values()):
        examples, blend_cutoff = _blend_examples(plan, store, inputs, train, blenders,
                                                 blend_fraction / (1 - test_fraction),
                                                 progress)
        seconds = fit_blenders(blenders, replace(train, events=train.events[
            train.events[C.EVENT_TIMESTAMP] < blend_cutoff]), progress, examples)
        seconds.update(fit_components(components, train, progress))
    else:
        seconds = _fit(components, blenders, train, progress)
    result = _evaluate(plan, components, blenders, store, inputs, split, k, progress,
                       keep_lists)
    if not write:
        return TrainResult(None, None, result.metrics, plan.notes, result.lists,
                           result.importance)
    fitted_on = split.train
    if refit:  # the scorers on the whole window; the blenders as they are
        components, _ = plan.build()
        seconds.update(fit_components(components, full, progress))
        fitted_on = full.events
    version = new_version()
    window = {"start": events[C.EVENT_TIMESTAMP].min(), "end": events[C.EVENT_TIMESTAMP].max(),
              "test_cutoff": split.cutoff, "test_fraction": test_fraction,
              "blend_cutoff": blend_cutoff, "refit_on_full_window": refit}
    contents = BundleContents(
        plans=plan.plans, components=components, blenders=blenders,
        history=H.seen_pairs(fitted_on, plan.scenarios),
        sequences=(H.recent_events(fitted_on, plan.sequence_lengths)
                   if any(plan.sequence_lengths.values()) else None),
        catalogue=inputs.items.loc[inputs.items[C.SCENARIO].isin(names),
                                   [C.ITEM_ID, C.SCENARIO]],
        fit_seconds=seconds,
        manifest={"data_window": window, "k": k,
                  "events": {n: int((events[C.SCENARIO] == n).sum()) for n in names},
                  "events_fingerprint": fingerprint(events),
                  "feedback_until": inputs.feedback_until,
                  "feature_repo": str(ws.feature_repo), "metrics": result.metrics,
                  "notes": plan.notes, "config": dict(config or {})})
    path = write_bundle(ws.bundles, version, contents)
    write_features(components, store, inputs.items[inputs.items[C.SCENARIO].isin(names)],
                   progress)
    switch_current(ws.bundles, version)
    return TrainResult(version, path, result.metrics, plan.notes, result.lists,
                       result.importance)


def _blend_examples(plan: Plan, store: Any, inputs: Inputs, train: TrainingData,
                    blenders: Mapping[str, Any], fraction: float, progress: bool
                    ) -> tuple[BlendExamples, pd.Timestamp]:
    """Scorers fit before the blend slice (the latest ``fraction`` of ``train``), scoring
    it; the examples and the slice's start."""
    inner = temporal_split(train.events, fraction)
    components, _ = plan.build()
    fit_components(components, replace(train, events=inner.train), progress)
    examples = blend_examples(plan.scenarios, plan.plans, plan.features, components, blenders,
                              store, {n: inputs.catalogue(n) for n in plan.scenarios},
                              inner.train, inner.test, inner.cutoff, progress)
    return examples, inner.cutoff


def _fit(components: Mapping[str, Any], blenders: Mapping[str, Any], data: Any,
         progress: bool) -> dict[str, float]:
    return {**fit_components(components, data, progress),
            **fit_blenders(blenders, data, progress)}


def _evaluate(plan: Plan, components: Mapping[str, Any], blenders: Mapping[str, Any],
              store: Any, inputs: Inputs, split: Split, k: int, progress: bool,
              keep_lists: bool) -> Evaluation:
    return evaluate(plan.scenarios, plan.plans, plan.features, components, blenders, store,
                    {n: inputs.catalogue(n) for n in plan.scenarios}, split.train, split.test,
                    split.cutoff, k, progress, keep_lists)


def evaluate_bundle(ws: Workspace, version: str | None = None, k: int | None = None,
                    progress: bool = True, keep_lists: bool = False) -> TrainResult:
    """Evaluate a stored bundle on the events of its data window, split at its recorded test
    cutoff: for a bundle trained without refitting, the figures ``train`` printed."""
    from hybridrec.features import applied_views, open_store
    from hybridrec.pipeline import resolve_plans
    from hybridrec.plugins import get_registry

    bundle = Bundle.load(ws.bundles, version)
    manifest, notes = bundle.manifest, []
    window = manifest["data_window"]
    plans = bundle.plans
    registry = get_registry()
    scenarios = {name: registry.get("scenarios", name) for name in plans}
    inputs = load_inputs(ws)
    ts = inputs.events[C.EVENT_TIMESTAMP]
    events = inputs.events[inputs.events[C.SCENARIO].isin(list(plans))
                           & (ts <= pd.Timestamp(window["end"]))]
    if fingerprint(events) != manifest.get("events_fingerprint"):
        notes.append(f"the events of bundle {bundle.version}'s window have changed since it "
                     "was trained; figures differ from those it recorded")
    if window.get("refit_on_full_window"):
        notes.append(f"bundle {bundle.version} was refit on its test window too, so these "
                     "figures are optimistic; train with --no-refit to evaluate a bundle as "
                     "served")
    store = open_store(ws.feature_repo)
    features = resolve_plans(applied_views(store), scenarios, plans, bundle.components,
                             bundle.blenders)
    split = split_at(events, pd.Timestamp(window["test_cutoff"]))
    catalogue = bundle.catalogue()
    result = evaluate(scenarios, plans, features, bundle.components, bundle.blenders, store,
                      {n: catalogue.loc[catalogue[C.SCENARIO] == n, C.ITEM_ID].to_numpy(str)
                       for n in plans}, split.train, split.test,
                      split.cutoff, k or int(manifest.get("k", 10)), progress, keep_lists)
    return TrainResult(bundle.version, bundle.path, result.metrics, notes, result.lists,
                       result.importance)
