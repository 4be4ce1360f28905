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
    make_split,
    scenario_names,
    split_at,
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
    #: Everything evaluation measured (intervals, activity buckets, calibration...).
    evaluation: Evaluation | None = None


def run(ws: Workspace, scenarios: Iterable[str] | None = None,
        only_scorers: Iterable[str] | None = None, test_fraction: float = 0.1, k: int = 10,
        refit: bool = True, write: bool = True,
        config: Mapping[str, Mapping[str, Any]] | None = None, progress: bool = True,
        keep_lists: bool = False, blend_fraction: float = 0.1, split: str = "temporal",
        seed: int = 0, report: Path | None = None, baselines: Iterable[str] = ()
        ) -> TrainResult:
    """Fit, evaluate and (with ``write``) save a bundle and make it current.

    Events are split in two, or in three when a blender learns from scores: a
    ``test_fraction`` of them is the test slice (the latest, for the default ``temporal``
    ``split``; see ``make_split`` for ``random`` and ``leave-last``), and ``blend_fraction``
    of the rest, split the same way, is the blend slice. The scorers are fit on the remainder
    and score the blend slice; the blenders learn from those scores; the scorers are then fit
    again on everything but the test slice and evaluated on it with those blenders. Refitting
    (``refit``) fits the scorers on the whole window and keeps the blenders, which never see
    a test label. ``report`` writes the evaluation report (``hybridrec.report``) there;
    ``baselines`` names other blenders fit and evaluated beside each scenario's own."""
    from hybridrec.features import applied_views, open_store
    from hybridrec.plugins import get_registry

    inputs = load_inputs(ws)
    names, notes = scenario_names(inputs, scenarios, get_registry().scenarios)
    plan = make_plan(get_registry(), names, only_scorers, config or {})
    plan.notes += notes
    store = open_store(ws.feature_repo)
    plan.resolve(applied_views(store))
    events = inputs.events[inputs.events[C.SCENARIO].isin(names)]
    full = replace(training_data(store, events, inputs, plan, progress), split=split)
    split_of = _splitter(split, seed)
    parts = split_of(full.events, test_fraction, 0)
    if split != "temporal":
        plan.notes.append(f"{split} split: test requests are scored as of the end of the "
                          "data, so features derived from the event log may count test events")
    others = _baselines(plan, baselines)
    components, blenders, seconds, blend_cutoff = _fit_stages(
        plan, store, inputs, replace(full, events=parts.train),
        lambda events: split_of(events, blend_fraction / (1 - test_fraction), 1), progress,
        others)
    result = evaluate(plan.scenarios, plan.plans, plan.features, components, blenders, store,
                      {n: inputs.catalogue(n) for n in plan.scenarios}, parts.train,
                      parts.test, parts.cutoff, k, progress, keep_lists, others)
    if report is not None:
        from hybridrec.report import write_report

        write_report(report, result, k, title=f"hybridrec evaluation ({split} split)")
    if not write:
        return TrainResult(None, None, result.metrics, plan.notes, result.lists,
                           result.importance, result)
    fitted_on = parts.train
    if refit:  # the scorers on the whole window; the blenders as they are
        components, _ = plan.build()
        seconds.update(fit_components(components, full, progress))
        _observe(blenders, full)
        fitted_on = full.events
    version = new_version()
    window = {"start": events[C.EVENT_TIMESTAMP].min(), "end": events[C.EVENT_TIMESTAMP].max(),
              "test_cutoff": parts.cutoff, "test_fraction": test_fraction,
              "split": split, "seed": seed,
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
                       result.importance, result)


def _fit_stages(plan: Plan, store: Any, inputs: Inputs, train: TrainingData,
                blend_split: Any, progress: bool, others: Mapping[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any], dict[str, float], Any]:
    """Fresh components and blenders fit on ``train``: when a blender learns, it is fit on
    the blend slice (``blend_split(train.events)``) scored by scorers fit before it, and so
    are the ``others``. Returns them, the seconds each fit took and the blend slice's cutoff
    (None without one)."""
    components, blenders = plan.build()
    every = {**others, **blenders}
    if not any(b.learns for b in every.values()):
        return components, blenders, _fit(components, every, train, progress), None
    inner = blend_split(train.events)
    examples = _blend_examples(plan, store, inputs, train, blenders, inner, progress)
    seconds = fit_blenders(every, replace(train, events=inner.train), progress, examples)
    seconds.update(fit_components(components, train, progress))
    _observe(every, train)
    return components, blenders, seconds, inner.cutoff


def _observe(blenders: Mapping[str, Any], data: TrainingData) -> None:
    """Tell every blender the events the scorers were just fit on."""
    for blender in blenders.values():
        blender.observe(data)


def _baselines(plan: Plan, names: Iterable[str]) -> dict[str, Any]:
    """Fresh blenders, by name, to evaluate beside the scenarios' own."""
    from hybridrec import config as cfg
    from hybridrec.plugins import get_registry

    registry, out = get_registry(), {}
    for name in names:
        if name not in registry.blenders:
            raise TrainingError(f"unknown blender {name!r}; installed: "
                                f"{', '.join(sorted(registry.blenders))}")
        out[name] = cfg.build(registry.blenders[name], plan.config)
    return out


def _splitter(kind: str, seed: int) -> Any:
    """``split(events, fraction, stage)``: the run's way of splitting, seeded per stage."""
    from hybridrec.training.data import SPLITS

    if kind not in SPLITS:
        raise TrainingError(f"unknown split {kind!r}; known: {', '.join(SPLITS)}")
    return lambda events, fraction, stage: make_split(events, kind, fraction, seed + stage)


def _blend_examples(plan: Plan, store: Any, inputs: Inputs, train: TrainingData,
                    blenders: Mapping[str, Any], inner: Split, progress: bool
                    ) -> BlendExamples:
    """Scorers fit on ``inner.train`` scoring the blend slice ``inner.test``."""
    components, _ = plan.build()
    fit_components(components, replace(train, events=inner.train), progress)
    return blend_examples(plan.scenarios, plan.plans, plan.features, components, blenders,
                          store, {n: inputs.catalogue(n) for n in plan.scenarios},
                          inner.train, inner.test, inner.cutoff, progress)


def _fit(components: Mapping[str, Any], blenders: Mapping[str, Any], data: Any,
         progress: bool) -> dict[str, float]:
    return {**fit_components(components, data, progress),
            **fit_blenders(blenders, data, progress)}


def evaluate_bundle(ws: Workspace, version: str | None = None, k: int | None = None,
                    progress: bool = True, keep_lists: bool = False,
                    report: Path | None = None) -> TrainResult:
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
    scenarios = {name: p.scenario(registry.get("scenarios", name)) for name, p in plans.items()}
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
    kind = window.get("split", "temporal")
    if kind == "temporal":
        split = split_at(events, pd.Timestamp(window["test_cutoff"]))
    else:
        split = make_split(events, kind, float(window["test_fraction"]),
                           int(window.get("seed", 0)))
    catalogue = bundle.catalogue()
    k = k or int(manifest.get("k", 10))
    result = evaluate(scenarios, plans, features, bundle.components, bundle.blenders, store,
                      {n: catalogue.loc[catalogue[C.SCENARIO] == n, C.ITEM_ID].to_numpy(str)
                       for n in plans}, split.train, split.test,
                      split.cutoff, k, progress, keep_lists)
    if report is not None:
        from hybridrec.report import write_report

        write_report(report, result, k, title=f"hybridrec evaluation of bundle "
                                              f"{bundle.version} ({kind} split)")
    return TrainResult(bundle.version, bundle.path, result.metrics, notes, result.lists,
                       result.importance, result)
