"""Offline evaluation through the serving pipeline.

Protocol: a global temporal split at ``cutoff``. For each user with training events in the
scenario and at least one positive test event on an item not seen in training, the scenario's
``Pipeline`` answers as the server would have at the cutoff: candidates from the scenario's
sources, seen items left out, features as of the cutoff, every scorer, the blend, the top K.
The test positives are the relevant items. Each scorer alone is ranked over the same
candidates by its objective task, or, when it has several tasks, by each of them
(``llm.click``, ``llm.like``). Metrics: NDCG@K, Recall@K, MAP@K, HitRate@K and catalogue
coverage; where a scenario has non-positive events (views, impressions), AUC over the test
(user, item) pairs (pooled, and grouped per user, the one that is fair to per-request blends).
Where a scenario has exposure events (``hybridrec.impressions``), every scorer task that is a
probability (``PROBABILITY_TASKS``: ``ctr``) is also measured on each test impression, scored
alone with its slot position as the request context: log loss and expected calibration error
(10 bins), since its probabilities are used as probabilities downstream.

Users are scored a chunk at a time, as arrays: no loop per user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hybridrec import columns as C
from hybridrec import history as H
from hybridrec import metrics as M
from hybridrec.contracts import (
    PROBABILITY_TASKS,
    Blender,
    BlendExamples,
    Explainer,
    Ragged,
    Scenario,
    ScoredRequests,
    utc64,
)
from hybridrec.features import FeatureSet, as_of
from hybridrec.ids import IdIndex
from hybridrec.impressions import LABEL, labelled_impressions
from hybridrec.pipeline import Pipeline, Requests, ScenarioPlan, Scored
from hybridrec.progress import progress_bar

BLEND = "blend"
#: Requests scored together.
CHUNK = 256


@dataclass
class Evaluation:
    """Metrics per scenario and ranker (each scorer, then ``blend``) and, when asked, each
    evaluated user's top-K lists."""

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    lists: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    #: Per scenario and scorer that explains itself, each input's share of importance.
    importance: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


@dataclass
class _Targets:
    """What one scenario is evaluated on."""

    users: np.ndarray  # ranked: warm users with a relevant item
    relevant: pd.DataFrame  # (user, item) test positives on catalogue items new to the user
    auc_pairs: pd.DataFrame  # distinct test (user, item, label) of warm users; may be empty
    everyone: IdIndex  # every user above, sorted
    history: Ragged  # each of ``everyone``'s seen items before the cutoff, oldest first
    seen: pd.DataFrame  # (user, item) pairs seen before the cutoff
    impressions: pd.DataFrame  # labelled test exposures of catalogue items; may be empty
    recent: pd.DataFrame | None = None  # the scenario's recent events, when a scorer asks


def evaluate(scenarios: Mapping[str, Scenario], plans: Mapping[str, ScenarioPlan],
             feature_sets: Mapping[str, FeatureSet], components: Mapping[str, Any],
             blenders: Mapping[str, Blender], store: Any,
             catalogue: Mapping[str, np.ndarray], train: pd.DataFrame, test: pd.DataFrame,
             cutoff: Any, k: int = 10, progress: bool = True,
             keep_lists: bool = False) -> Evaluation:
    """Evaluate every scenario of ``plans`` with the given fitted components."""
    targets = {name: _targets(scenarios[name], train, test, catalogue[name]) for name in plans}
    features = as_of(store, feature_sets, catalogue,
                     {name: t.everyone.ids for name, t in targets.items()}, cutoff)
    result = Evaluation()
    for name, plan in plans.items():
        pipeline = Pipeline.from_plan(scenarios[name], plan, components, blenders, features,
                                      catalogue[name])
        if pipeline.sequence_length:
            targets[name].recent = H.recent_events(
                train[train[C.SCENARIO] == name], {name: pipeline.sequence_length})
        metrics, lists = evaluate_scenario(pipeline, targets[name], cutoff, k, progress,
                                           keep_lists)
        if metrics:
            result.metrics[name] = metrics
        if keep_lists:
            result.lists[name] = lists
        shares = {scorer: c.feature_importance(name) for scorer, c in pipeline.scorers.items()
                  if isinstance(c, Explainer)}
        if any(shares.values()):
            result.importance[name] = {k: v for k, v in shares.items() if v}
    return result


def _targets(scenario: Scenario, train: pd.DataFrame, test: pd.DataFrame,
             catalogue: np.ndarray) -> _Targets:
    tr = train[train[C.SCENARIO] == scenario.name]
    seen = H.seen_pairs(tr, {scenario.name: scenario})
    te = test[test[C.SCENARIO] == scenario.name]
    positives = te.loc[te[C.EVENT_TYPE].isin(scenario.positive_events), [C.USER_ID, C.ITEM_ID]]
    relevant = positives.drop_duplicates().merge(seen[[C.USER_ID, C.ITEM_ID]], how="left",
                                                 indicator=True)
    relevant = relevant[(relevant["_merge"] == "left_only")
                        & relevant[C.ITEM_ID].isin(catalogue)].drop(columns="_merge")
    warm = set(seen[C.USER_ID])
    users = np.array(sorted(set(relevant[C.USER_ID]) & warm), dtype=object)
    pairs = pd.DataFrame(columns=[C.USER_ID, C.ITEM_ID, "label"])
    if not set(scenario.positive_events) >= set(scenario.event_types):
        labelled = te.assign(label=te[C.EVENT_TYPE].isin(scenario.positive_events))
        labelled = labelled.groupby([C.USER_ID, C.ITEM_ID], as_index=False)["label"].max()
        # only warm users, and only items the scenario serves (others cannot be ranked)
        labelled = labelled[labelled[C.USER_ID].isin(warm)
                            & labelled[C.ITEM_ID].isin(catalogue)]
        if labelled["label"].nunique() == 2:
            pairs = labelled.sort_values([C.USER_ID, C.ITEM_ID], kind="stable")
    everyone = np.union1d(users, pairs[C.USER_ID].to_numpy(dtype=object))
    shown = labelled_impressions(te, scenario)
    shown = shown[shown[C.ITEM_ID].isin(catalogue)].reset_index(drop=True)
    return _Targets(users, relevant, pairs, IdIndex(everyone), H.grouped(seen, everyone), seen,
                    shown)


def _requests(targets: _Targets, users: np.ndarray, cutoff: Any,
              candidates: Ragged | None = None,
              context: list[Mapping[str, Any]] | None = None) -> Requests:
    sequences = None
    if targets.recent is not None:
        sequences = H.sequences_of(targets.recent, users)
    rows = targets.everyone.positions(users)
    if (rows >= 0).all():
        history = targets.history.take(rows)
    else:  # users with no ranked target (impressions): from the seen pairs, once per user
        distinct, inverse = np.unique(users.astype(str), return_inverse=True)
        history = H.grouped(targets.seen, distinct.astype(object)).take(inverse)
    return Requests(user_ids=users, history=history,
                    exclude_seen=np.full(len(users), candidates is None),
                    context=context or [], candidates=candidates, sequences=sequences,
                    as_of=utc64(pd.Timestamp(cutoff)))



def _chunks(requests: Requests, desc: str, progress: bool) -> Any:
    starts = range(0, len(requests), CHUNK)
    for start in progress_bar(starts, desc, total=len(starts), enabled=progress):
        rows = np.arange(start, min(start + CHUNK, len(requests)))
        yield rows, requests.take(rows)


def objective(outputs: Mapping[str, np.ndarray], scenario: Scenario) -> np.ndarray:
    """The array a scorer is ranked by alone: its first task in the scenario's objective,
    else its first task."""
    for task in scenario.objective:
        if task in outputs:
            return outputs[task]
    return next(iter(outputs.values()))


def _rankings(scored: Scored, scenario: Scenario) -> dict[str, np.ndarray]:
    """What is ranked: each scorer by its objective task (``als``), or, for a scorer with
    several tasks, by each of them (``llm.click``, ``llm.like``); then the blend."""
    ranked = {}
    for name, out in scored.outputs.items():
        if len(out) > 1:
            ranked.update({f"{name}.{task}": values for task, values in out.items()})
        else:
            ranked[name] = objective(out, scenario)
    ranked[BLEND] = scored.final
    return ranked


def evaluate_scenario(pipeline: Pipeline, targets: _Targets, cutoff: Any, k: int,
                      progress: bool = True, keep_lists: bool = False
                      ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """Metrics per ranker on one scenario, and (``keep_lists``) each user's top-K lists."""
    users, scenario = targets.users, pipeline.scenario
    if len(users) == 0 or len(pipeline.catalogue) == 0:
        return {}, {}
    top: dict[str, np.ndarray] = {}
    requests = _requests(targets, users, cutoff)
    for rows, chunk in _chunks(requests, f"evaluating {scenario.name}", progress):
        scored = pipeline.score(chunk)
        for name, values in _rankings(scored, scenario).items():
            best = scored.top(k, values)
            request = best.row_index()
            rank = np.arange(len(best.values)) - best.offsets[request]
            ranks = top.setdefault(name, np.full((len(users), k), -1, dtype=np.int64))
            ranks[rows[request], rank] = scored.codes[best.values]
    names = list(top)

    relevant = targets.relevant
    rel_rows = pd.Index(users).get_indexer(relevant[C.USER_ID])
    rel_cols = pipeline.index.positions(relevant[C.ITEM_ID].to_numpy(dtype=object))
    keep = (rel_rows >= 0) & (rel_cols >= 0)
    rel_rows, rel_cols = rel_rows[keep], rel_cols[keep]
    n_relevant = np.bincount(rel_rows, minlength=len(users))
    results: dict[str, dict[str, float]] = {}
    for name in names:
        hits = M.hits_matrix(top[name], rel_rows, rel_cols)
        row = {f"{m}@{k}": v for m, v in M.ranking_metrics(hits, n_relevant).items()}
        row[f"coverage@{k}"] = M.coverage(top[name], len(pipeline.catalogue))
        row["users"] = float(len(users))
        results[name] = row
    for name, aucs in _pairwise_auc(pipeline, targets, cutoff, progress).items():
        results[name].update(aucs)
    for name, measured in _pointwise(pipeline, targets, cutoff, progress).items():
        results.setdefault(name, {}).update(measured)
    lists = {}
    if keep_lists:
        lists = {str(u): {name: pipeline.catalogue[top[name][i][top[name][i] >= 0]].tolist()
                          for name in names} for i, u in enumerate(users)}
    return results, lists


def _pairwise_auc(pipeline: Pipeline, targets: _Targets, cutoff: Any,
                  progress: bool) -> dict[str, dict[str, float]]:
    """AUC over distinct test (user, item) pairs, labelled by whether any event was positive:
    pooled over all pairs, and grouped per user."""
    pairs = targets.auc_pairs
    if pairs.empty:
        return {}
    users = np.array(pd.unique(pairs[C.USER_ID]), dtype=object)
    candidates = H.grouped(pairs, users)
    width = len(pipeline.catalogue) + 1
    label_index = pd.Index(pd.Index(users).get_indexer(pairs[C.USER_ID]) * width
                           + pipeline.index.positions(pairs[C.ITEM_ID].to_numpy(dtype=object))
                           + 1)
    labels_all = pairs["label"].to_numpy(bool)
    requests = _requests(targets, users, cutoff,
                         Ragged(candidates.values.astype(str), candidates.offsets))
    scores: dict[str, list[np.ndarray]] = {}
    labels, groups = [], []
    for rows, chunk in _chunks(requests, f"pairwise {pipeline.scenario.name}", progress):
        scored = pipeline.score(chunk)
        user = rows[scored.batch.request]
        labels.append(labels_all[label_index.get_indexer(user * width + scored.codes + 1)])
        groups.append(user)
        for name, values in _rankings(scored, pipeline.scenario).items():
            scores.setdefault(name, []).append(values)
    y, g = np.concatenate(labels), np.concatenate(groups)
    result: dict[str, dict[str, float]] = {}
    for name, parts in scores.items():
        values = np.concatenate(parts)
        # Pooled AUC compares scores across users; a blend normalised per request has no
        # such scale, so it gets the per-user (grouped) AUC only.
        result[name] = {"gauc": M.grouped_auc(g, y, values),
                        "auc": M.auc(y, values) if name != BLEND else float("nan")}
    return result


def _pointwise(pipeline: Pipeline, targets: _Targets, cutoff: Any,
               progress: bool) -> dict[str, dict[str, float]]:
    """Log loss and calibration error of every probability task over the test impressions,
    each scored alone (its slot as the request's ``position``), as of the cutoff."""
    shown = targets.impressions
    if shown.empty:
        return {}
    users = shown[C.USER_ID].to_numpy(dtype=object)
    candidates = Ragged(shown[C.ITEM_ID].to_numpy(str), np.arange(len(shown) + 1))
    context: list[Mapping[str, Any]] = [{} for _ in range(len(shown))]
    if C.POSITION in shown:
        context = [{} if pd.isna(p) else {"position": int(p)}
                   for p in shown[C.POSITION].to_numpy(dtype=object)]
    requests = _requests(targets, users, cutoff, candidates, context)
    probs: dict[str, list[np.ndarray]] = {}
    for _, chunk in _chunks(requests, f"impressions {pipeline.scenario.name}", progress):
        scored = pipeline.score(chunk)
        for name, out in scored.outputs.items():
            for task, values in out.items():
                if task in PROBABILITY_TASKS:
                    key = name if len(out) == 1 else f"{name}.{task}"
                    probs.setdefault(key, []).append(values)
    y = shown[LABEL].to_numpy(float)
    result = {}
    for name, parts in probs.items():
        p = np.concatenate(parts)
        ok = np.isfinite(p)
        if ok.any():
            result[name] = {"logloss": M.logloss(y[ok], p[ok]), "ece": M.ece(y[ok], p[ok]),
                            "impressions": float(ok.sum())}
    return result


def blend_examples(scenarios: Mapping[str, Scenario], plans: Mapping[str, ScenarioPlan],
                   feature_sets: Mapping[str, FeatureSet], components: Mapping[str, Any],
                   blenders: Mapping[str, Blender], store: Any,
                   catalogue: Mapping[str, np.ndarray], before: pd.DataFrame,
                   during: pd.DataFrame, cutoff: Any, progress: bool = True) -> BlendExamples:
    """The blend slice ``during`` scored as evaluation scores a test slice (the users with a
    positive event in it, candidates from the sources, features as of ``cutoff``) by
    components fit on ``before``, without blending; each row labelled by the largest weight
    among the scenario's positive events on its (user, item) in the slice."""
    targets = {name: _targets(scenarios[name], before, during, catalogue[name])
               for name in plans}
    features = as_of(store, feature_sets, catalogue,
                     {name: t.everyone.ids for name, t in targets.items()}, cutoff)
    examples = BlendExamples()
    for name, plan in plans.items():
        scenario, t = scenarios[name], targets[name]
        pipeline = Pipeline.from_plan(scenario, plan, components, blenders, features,
                                      catalogue[name])
        if pipeline.sequence_length:
            t.recent = H.recent_events(before[before[C.SCENARIO] == name],
                                       {name: pipeline.sequence_length})
        gains = _gains(during[during[C.SCENARIO] == name], scenario)
        parts = []
        if len(t.users):
            for _, chunk in _chunks(_requests(t, t.users, cutoff), f"blend slice {name}",
                                    progress):
                scored = pipeline.score(chunk, blend=False)
                keys = pd.MultiIndex.from_arrays([scored.batch.user_ids[scored.batch.request],
                                                  scored.batch.item_ids])
                labels = gains.reindex(keys).fillna(0.0).to_numpy(float)
                parts.append(ScoredRequests(scored.batch, scored.outputs, labels))
        examples.scenarios[name] = parts
    return examples


def _gains(events: pd.DataFrame, scenario: Scenario) -> pd.Series:
    """Per (user, item), the largest weight among its positive events."""
    positive = events[events[C.EVENT_TYPE].isin(scenario.positive_events)]
    weight = positive[C.EVENT_TYPE].map(scenario.event_weights).astype(float)
    weight = weight.where(weight > 0, 1.0)  # a positive event weighed 0 still counts
    return weight.groupby([positive[C.USER_ID].astype(str),
                           positive[C.ITEM_ID].astype(str)]).max()
