"""Training and offline evaluation: Feast frames in, a bundle and a metrics table out.

``train`` reads the event log, joins each scenario's features from Feast point-in-time
correctly, holds out the latest ``test_fraction`` of events (a global temporal split), fits
every component on the rest, evaluates each scorer alone and the blend per scenario, refits on
the whole window, and writes a bundle that becomes ``current``.

Evaluation protocol (``evaluate_scenario``): for each user with training events in the
scenario and at least one positive test event on an item not seen in training, rank every
catalogue item of the scenario the user did not interact with in training; relevant items are
the test positives. Scenarios with zero-weight events (ad impressions) or non-positive events
(views) also get an AUC over the test (user, item) pairs: did the scorer put the pairs that
converted above those that did not.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec import metrics as M
from hybridrec.builtin import features as F
from hybridrec.bundle import CURRENT, MANIFEST, class_path, new_version, switch_current
from hybridrec.contracts import Blender, Scenario, ScoreBatch, Scorer, TrainingData
from hybridrec.data.tables import as_utc_us, read_table
from hybridrec.workspace import Workspace

log = logging.getLogger(__name__)

BLEND = "blend"


class TrainingError(RuntimeError):
    """Training cannot proceed (no data, nothing applied in Feast, unknown names)."""


def _progress(iterable: Iterable[Any], desc: str, total: int | None = None,
              enabled: bool = True) -> Iterable[Any]:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, file=sys.stderr,
                leave=False)


# Inputs ---------------------------------------------------------------------------------

@dataclass
class Inputs:
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame


def load_inputs(ws: Workspace) -> Inputs:
    """Event log (with feedback received since), catalogue and users from the feature repo."""
    from hybridrec.feedback import FeedbackLog

    events = read_table(ws.data_dir, C.EVENTS_FILE)
    if ws.feedback_db.exists():
        extra = FeedbackLog(ws.feedback_db).events()
        if len(extra):
            events = pd.concat([events, extra[events.columns]], ignore_index=True)
    events[C.EVENT_TIMESTAMP] = as_utc_us(events[C.EVENT_TIMESTAMP])
    return Inputs(events=events, items=read_table(ws.data_dir, C.ITEMS_FILE),
                  users=read_table(ws.data_dir, C.USERS_FILE))


def temporal_split(events: pd.DataFrame, test_fraction: float) -> tuple[pd.DataFrame,
                                                                         pd.DataFrame,
                                                                         pd.Timestamp]:
    """Events before the ``1 - test_fraction`` time quantile train; the rest test."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    ts = events[C.EVENT_TIMESTAMP]
    cutoff = ts.quantile(1 - test_fraction)
    return events[ts < cutoff], events[ts >= cutoff], cutoff


# Components -----------------------------------------------------------------------------

@dataclass
class Plan:
    """Which scenarios train, and which scorers, sources and blender each uses."""

    scenarios: dict[str, Scenario]
    scorers: dict[str, list[str]]
    sources: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)

    def names(self, kind: str) -> set[str]:
        """Scorer (``kind="scorers"``) or candidate source names used by any scenario."""
        per = self.scorers if kind == "scorers" else self.sources
        return {name for names in per.values() for name in names}


def make_plan(scenarios: Iterable[str], only_scorers: Iterable[str] | None = None,
              config: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Plan, dict]:
    """Resolve names through the plugin registry and instantiate every component once.

    Returns the plan and ``{class: instance}``; a class registered as both a scorer and a
    candidate source (popularity) is one instance serving both roles.
    """
    from hybridrec.plugins import get_registry

    registry = get_registry()
    config = config or {}
    instances: dict[type, Any] = {}

    def instance(cls: Any) -> Any:
        if cls not in instances:
            instances[cls] = construct(cls, config)
        return instances[cls]

    check_config(config)
    wanted = set(only_scorers) if only_scorers else None
    if wanted:
        unknown = wanted - set(registry.scorers)
        if unknown:
            raise TrainingError(f"unknown scorer(s) {', '.join(sorted(unknown))}; installed: "
                                f"{', '.join(sorted(registry.scorers))}")
    plan = Plan(scenarios={}, scorers={}, sources={})
    for name in scenarios:
        scenario = registry.get("scenarios", name)
        plan.scenarios[name] = scenario
        listed = scenario.scorers if scenario.scorers is not None else tuple(registry.scorers)
        chosen = []
        for scorer in listed:
            if scorer not in registry.scorers:
                plan.notes.append(f"scenario {name!r} lists scorer {scorer!r}, not installed")
            elif (wanted is None or scorer in wanted) and instance(
                    registry.scorers[scorer]).supports(scenario):
                chosen.append(scorer)
        if not chosen:
            raise TrainingError(f"no installed scorer applies to scenario {name!r}")
        plan.scorers[name] = chosen
        sources = []
        listed = (scenario.candidate_sources if scenario.candidate_sources is not None
                  else tuple(registry.candidate_sources))
        for source in listed:
            if source not in registry.candidate_sources:
                plan.notes.append(f"scenario {name!r} lists candidate source {source!r}, "
                                  "not installed")
            elif instance(registry.candidate_sources[source]).supports(scenario):
                sources.append(source)
        if not sources:
            raise TrainingError(f"no installed candidate source for scenario {name!r}")
        plan.sources[name] = sources
        registry.get("blenders", scenario.blender)
    # Probing supports() built every candidate; keep only the components the plan uses.
    used = {registry.kind(kind)[n] for kind in ("scorers", "candidate_sources")
            for n in plan.names(kind)}
    return plan, {cls: obj for cls, obj in instances.items() if cls in used}


def check_config(config: Mapping[str, Any]) -> None:
    """Every config section must name an installed scorer, candidate source or blender."""
    from hybridrec.plugins import get_registry

    registry = get_registry()
    known = set(registry.scorers) | set(registry.candidate_sources) | set(registry.blenders)
    for name, section in config.items():
        if name not in known:
            raise TrainingError(f"config section [{name}] names no installed component; "
                                f"known: {', '.join(sorted(known))}")
        if not isinstance(section, Mapping):
            raise TrainingError(f"config section [{name}] must be a table of parameters")


def construct(cls: Any, config: Mapping[str, Mapping[str, Any]]) -> Any:
    """``cls`` built with its config section; a wrong parameter is a TrainingError naming it."""
    try:
        return cls(**dict(config.get(cls.name, {})))
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"invalid config for [{cls.name}]: {exc}") from None


def load_config(path: Path | None) -> dict[str, dict[str, Any]]:
    """Component config from a TOML file: one table per component name.

    ``[als]`` ``device = "cpu"``, ``[als.weights.shop]`` ``view = 1.0``, ``[weighted.weights.shop]``
    ``"als.click" = 2.0``, ...
    """
    import tomllib

    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise TrainingError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TrainingError(f"config {path} is not valid TOML: {exc}") from None


def _fitted_scorers(plan: Plan, instances: dict) -> dict[str, Scorer]:
    from hybridrec.plugins import get_registry

    registry = get_registry()
    return {n: instances[registry.scorers[n]] for n in plan.names("scorers")}


def _blenders(plan: Plan, config: Mapping[str, Mapping[str, Any]]) -> dict[str, Blender]:
    from hybridrec.plugins import get_registry

    registry = get_registry()
    names = {s.blender for s in plan.scenarios.values()}
    return {n: construct(registry.blenders[n], config) for n in names}


def fit_all(instances: dict, blenders: dict[str, Blender], data: TrainingData,
            progress: bool) -> dict[str, float]:
    """Fit every component, then the blenders; return seconds per component."""
    import time

    seconds = {}
    for obj in _progress(list(instances.values()) + list(blenders.values()), "fitting",
                         enabled=progress):
        start = time.perf_counter()
        obj.fit(data)
        seconds[obj.name] = round(time.perf_counter() - start, 3)
    return seconds


# Evaluation ------------------------------------------------------------------------------

def seen_mask(events: pd.DataFrame, scenario: Scenario) -> pd.Series:
    """Events that make an item 'seen' by the user: those with a positive weight."""
    weights = events[C.EVENT_TYPE].map(scenario.event_weights).fillna(0.0)
    return weights > 0


def _features_at(store: Any, ids: np.ndarray, key: str, views: tuple[str, ...],
                 when: pd.Timestamp, extra_keys: Mapping[str, np.ndarray] | None = None
                 ) -> dict[str, np.ndarray]:
    from hybridrec.features import point_in_time

    frame = pd.DataFrame({key: ids, C.EVENT_TIMESTAMP: when})
    for name, values in (extra_keys or {}).items():
        frame[name] = values
    joined = point_in_time(store, frame, F.feature_refs(views))
    return {c: joined[c].to_numpy(dtype=object) for c in joined.columns if "__" in c}


def evaluate_scenario(
    scenario: Scenario,
    scorers: Mapping[str, Scorer],
    blender: Blender,
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
    store: Any = None,
    cutoff: pd.Timestamp | None = None,
    k: int = 10,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics per scorer (and for the blend) on one scenario; see the module docstring."""
    catalogue = items.loc[items[C.SCENARIO] == scenario.name, C.ITEM_ID].to_numpy(str)
    item_pos = pd.Index(catalogue)
    tr = train[(train[C.SCENARIO] == scenario.name) & seen_mask(train, scenario)]
    te = test[test[C.SCENARIO] == scenario.name]
    positives = te[te[C.EVENT_TYPE].isin(scenario.positive_events)]
    tr_pairs = tr[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    pos_pairs = positives[[C.USER_ID, C.ITEM_ID]].drop_duplicates()
    pos_pairs = pos_pairs.merge(tr_pairs, how="left", indicator=True)
    pos_pairs = pos_pairs[pos_pairs["_merge"] == "left_only"].drop(columns="_merge")
    warm = set(tr[C.USER_ID])
    users = np.array(sorted(set(pos_pairs[C.USER_ID]) & warm))
    if len(users) == 0 or len(catalogue) == 0:
        return {}

    seen_by_user = tr_pairs.groupby(C.USER_ID)[C.ITEM_ID].agg(list)
    user_feats: dict[str, np.ndarray] = {}
    item_feats: dict[str, np.ndarray] = {}
    if store is not None and cutoff is not None:
        user_feats = _features_at(store, users, C.USER_ID, F.USER_VIEWS, cutoff)
        item_feats = _features_at(store, catalogue, C.ITEM_ID, F.ITEM_VIEWS + (F.AD_PROFILE,),
                                  cutoff, {C.AD_ID: catalogue})

    names = list(scorers) + [BLEND]
    top = {name: np.full((len(users), k), -1, dtype=np.int64) for name in names}
    for u, user in enumerate(_progress(users, f"evaluating {scenario.name}",
                                       enabled=progress)):
        seen = item_pos.get_indexer(seen_by_user.get(user, []))
        mask = np.ones(len(catalogue), dtype=bool)
        mask[seen[seen >= 0]] = False
        cand = np.flatnonzero(mask)
        batch = ScoreBatch(
            scenario=scenario, user_id=user, item_ids=catalogue[cand],
            user_features={c: v[u] for c, v in user_feats.items()},
            item_features={c: v[cand] for c, v in item_feats.items()},
            history=seen_by_user.get(user, []),
        )
        outputs = {name: scorer.score(batch) for name, scorer in scorers.items()}
        ranked = {name: _objective(out, scenario) for name, out in outputs.items()}
        ranked[BLEND] = blender.blend(outputs, scenario, {})
        for name, values in ranked.items():
            order = _top_k(values, k)
            top[name][u, : len(order)] = cand[order]

    rel_rows = pd.Index(users).get_indexer(pos_pairs[C.USER_ID])
    rel_cols = item_pos.get_indexer(pos_pairs[C.ITEM_ID])
    keep = (rel_rows >= 0) & (rel_cols >= 0)
    rel_rows, rel_cols = rel_rows[keep], rel_cols[keep]
    n_relevant = np.bincount(rel_rows, minlength=len(users))
    results: dict[str, dict[str, float]] = {}
    for name in names:
        hits = M.hits_matrix(top[name], rel_rows, rel_cols)
        row = {f"{m}@{k}": v for m, v in M.ranking_metrics(hits, n_relevant).items()}
        row[f"coverage@{k}"] = M.coverage(top[name], len(catalogue))
        row["users"] = float(len(users))
        results[name] = row
    auc = _pairwise_auc(scenario, scorers, blender, te, warm, item_feats, item_pos)
    for name, aucs in auc.items():
        results[name].update(aucs)
    return results


def _objective(outputs: Mapping[str, np.ndarray], scenario: Scenario) -> np.ndarray:
    """The array a scorer is ranked by alone: its first task in the scenario's objective,
    else its first task."""
    for task in scenario.objective:
        if task in outputs:
            return outputs[task]
    return next(iter(outputs.values()))


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=float), nan=-np.inf)
    k = min(k, len(values))
    if k == 0:
        return np.array([], dtype=np.int64)
    part = np.argpartition(-values, k - 1)[:k]
    return part[np.argsort(-values[part], kind="stable")]


def _pairwise_auc(scenario: Scenario, scorers: Mapping[str, Scorer], blender: Blender,
                  test: pd.DataFrame, warm: set[str], item_feats: Mapping[str, np.ndarray],
                  item_pos: pd.Index) -> dict[str, dict[str, float]]:
    """AUC over distinct test (user, item) pairs, labelled by whether any event was positive:
    pooled over all pairs, and grouped per user."""
    from hybridrec.features import take_aligned

    if set(scenario.positive_events) >= set(scenario.event_types):
        return {}
    pairs = test.assign(_pos=test[C.EVENT_TYPE].isin(scenario.positive_events))
    pairs = pairs.groupby([C.USER_ID, C.ITEM_ID], as_index=False)["_pos"].max()
    pairs = pairs[pairs[C.USER_ID].isin(warm)]
    if pairs["_pos"].nunique() < 2:
        return {}
    scores: dict[str, list[np.ndarray]] = {name: [] for name in [*scorers, BLEND]}
    labels: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    for user, group in pairs.groupby(C.USER_ID, sort=False):
        ids = group[C.ITEM_ID].to_numpy(str)
        pos = item_pos.get_indexer(ids)
        batch = ScoreBatch(scenario=scenario, user_id=str(user), item_ids=ids,
                           item_features={c: take_aligned(v, pos)
                                          for c, v in item_feats.items()})
        outputs = {name: scorer.score(batch) for name, scorer in scorers.items()}
        for name, output in outputs.items():
            scores[name].append(_objective(output, scenario))
        scores[BLEND].append(blender.blend(outputs, scenario, {}))
        labels.append(group["_pos"].to_numpy())
        groups.append(np.full(len(group), len(groups)))
    y, g = np.concatenate(labels), np.concatenate(groups)
    result: dict[str, dict[str, float]] = {}
    for name, parts in scores.items():
        values = np.concatenate(parts)
        # Pooled AUC compares scores across users; a blend standardised per request has no
        # such scale, so it gets the per-user (grouped) AUC only.
        result[name] = {"gauc": M.grouped_auc(g, y, values),
                        "auc": M.auc(y, values) if name != BLEND else float("nan")}
    return result


# The whole run ---------------------------------------------------------------------------

@dataclass
class TrainResult:
    version: str | None
    path: Path | None
    metrics: dict[str, dict[str, dict[str, float]]]
    notes: list[str]


def _training_data(store: Any, events: pd.DataFrame, inputs: Inputs,
                   plan: Plan, progress: bool) -> TrainingData:
    """Each scenario's events with its feature service joined point-in-time correctly."""
    from hybridrec.features import historical_frame

    frames = []
    for name in _progress(list(plan.scenarios), "joining features", enabled=progress):
        scenario_events = events[events[C.SCENARIO] == name]
        if len(scenario_events):
            frames.append(historical_frame(store, scenario_events,
                                           plan.scenarios[name].feature_service_name))
    frame = pd.concat(frames, ignore_index=True) if frames else events.iloc[:0]
    frame[C.EVENT_TIMESTAMP] = as_utc_us(frame[C.EVENT_TIMESTAMP])
    return TrainingData(events=frame, items=inputs.items, users=inputs.users,
                        scenarios=plan.scenarios)


def run(
    ws: Workspace,
    scenarios: Iterable[str] | None = None,
    only_scorers: Iterable[str] | None = None,
    test_fraction: float = 0.1,
    k: int = 10,
    refit: bool = True,
    write: bool = True,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fit, evaluate and (with ``write``) save a bundle and make it current."""
    from hybridrec.features import check_applied, open_store

    config = config or {}
    inputs = load_inputs(ws)
    present = sorted(inputs.events[C.SCENARIO].unique())
    names = list(scenarios) if scenarios else present
    missing = [n for n in names if n not in present]
    if missing:
        raise TrainingError(f"no events for scenario(s) {', '.join(missing)}; the data has "
                            f"{', '.join(present) or 'none'}")
    plan, instances = make_plan(names, only_scorers, config)
    for note in plan.notes:
        log.warning(note)
    store = open_store(ws.feature_repo)
    check_applied(store)
    events = inputs.events[inputs.events[C.SCENARIO].isin(names)]

    # One point-in-time join for the whole window: each row's features depend only on that
    # row's time, so the training part is a slice of it.
    full = _training_data(store, events, inputs, plan, progress)
    train_events, test_events, cutoff = temporal_split(events, test_fraction)
    data = replace(full, events=full.events[full.events[C.EVENT_TIMESTAMP] < cutoff])
    blenders = _blenders(plan, config)
    seconds = fit_all(instances, blenders, data, progress)
    scorers = _fitted_scorers(plan, instances)
    metrics = {}
    for name, scenario in plan.scenarios.items():
        chosen = {s: scorers[s] for s in plan.scorers[name]}
        metrics[name] = evaluate_scenario(scenario, chosen, blenders[scenario.blender],
                                          train_events, test_events, inputs.items, store,
                                          cutoff, k, progress)
    if not write:
        return TrainResult(None, None, metrics, plan.notes)

    if refit:
        _, instances = make_plan(names, only_scorers, config)  # fresh, unfitted components
        blenders = _blenders(plan, config)
        seconds = fit_all(instances, blenders, full, progress)
    version = new_version()
    path = _write_bundle(ws, version, plan, instances, blenders, events, inputs, metrics,
                         {"start": events[C.EVENT_TIMESTAMP].min(),
                          "end": events[C.EVENT_TIMESTAMP].max(), "test_cutoff": cutoff,
                          "test_fraction": test_fraction, "refit_on_full_window": refit},
                         seconds, store, config)
    switch_current(ws.bundles, version)
    return TrainResult(version, path, metrics, plan.notes)


def _write_bundle(ws: Workspace, version: str, plan: Plan, instances: dict,
                  blenders: dict[str, Blender], events: pd.DataFrame, inputs: Inputs,
                  metrics: dict, window: dict, seconds: dict[str, float], store: Any,
                  config: Mapping[str, Any]) -> Path:
    from hybridrec.plugins import get_registry

    registry = get_registry()
    ws.bundles.mkdir(parents=True, exist_ok=True)
    staging = ws.bundles / f".{version}.tmp"
    (staging / "components").mkdir(parents=True)
    (staging / "blenders").mkdir()
    components = []
    for cls, obj in instances.items():
        roles = {kind: sorted(n for n in plan.names(kind) if registry.kind(kind)[n] is cls)
                 for kind in ("scorers", "candidate_sources")}
        roles = {kind: names for kind, names in roles.items() if names}
        directory = cls.name
        (staging / "components" / directory).mkdir()
        obj.save(staging / "components" / directory)
        kind, first = next((kind, names[0]) for kind, names in roles.items())
        components.append({"dir": directory, "class": class_path(cls), "roles": roles,
                           "plugin": registry.owner(kind, first), "params": obj.describe(),
                           "fit_seconds": seconds.get(cls.name)})
    blender_entries = {}
    for name, blender in blenders.items():
        (staging / "blenders" / name).mkdir()
        blender.save(staging / "blenders" / name)
        blender_entries[name] = {"class": class_path(type(blender)),
                                 "plugin": registry.owner("blenders", name),
                                 "params": blender.describe()}

    seen = []
    for name, scenario in plan.scenarios.items():
        part = events[(events[C.SCENARIO] == name) & seen_mask(events, scenario)]
        seen.append(part.groupby([C.USER_ID, C.ITEM_ID, C.SCENARIO], as_index=False)
                    [C.EVENT_TIMESTAMP].max())
    pd.concat(seen, ignore_index=True).to_parquet(staging / "history.parquet", index=False)
    catalogue = inputs.items[inputs.items[C.SCENARIO].isin(plan.scenarios)]
    catalogue[[C.ITEM_ID, C.SCENARIO]].to_parquet(staging / "catalogue.parquet", index=False)

    manifest = {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(),
        "data_window": {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                        for k, v in window.items()},
        "events": {n: int((events[C.SCENARIO] == n).sum()) for n in plan.scenarios},
        "feature_repo": str(ws.feature_repo),
        "feature_refs": {n: _service_refs(store, s) for n, s in plan.scenarios.items()},
        "scenarios": {n: {"scorers": plan.scorers[n], "candidate_sources": plan.sources[n],
                          "blender": s.blender} for n, s in plan.scenarios.items()},
        "components": components,
        "blenders": blender_entries,
        "plugins": {info.name: info.version for info in registry.plugins.values()},
        "python": sys.version.split()[0],
        "packages": _versions(("hybridrec", "feast", "numpy", "pandas")),
        "metrics": metrics,
        "notes": plan.notes,
        "config": config,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=_json_default))
    final = ws.bundles / version
    staging.rename(final)
    return final


def _service_refs(store: Any, scenario: Scenario) -> list[str]:
    service = store.get_feature_service(scenario.feature_service_name)
    return [f"{proj.name}:{f.name}" for proj in service.feature_view_projections
            for f in proj.features]


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


def prune(ws: Workspace, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` bundles (never the current one)."""
    current = (ws.bundles / CURRENT).resolve().name if (ws.bundles / CURRENT).exists() else None
    versions = sorted(p.name for p in ws.bundles.iterdir()
                      if p.is_dir() and not p.is_symlink() and (p / MANIFEST).exists())
    removed = []
    for version in versions[:-keep] if keep else versions:
        if version != current:
            shutil.rmtree(ws.bundles / version)
            removed.append(version)
    return removed
