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
from hybridrec import objectives as O
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
    evaluated user's top-K lists.

    Ranking metrics are means over users, each with a bootstrap 95 % interval over users
    (``"ndcg@10 lo"``, ``"ndcg@10 hi"``); ``objective@K`` is NDCG with the scenario's
    objective gains (``hybridrec.objectives``)."""

    metrics: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    lists: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    #: Per scenario and scorer that explains itself, each input's share of importance.
    importance: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: Per scenario, activity bucket and ranker: users and the objective with its interval.
    buckets: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    #: Per scenario: the best single ranker on the objective and the blend's paired
    #: difference from it, with its interval.
    comparison: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Per scenario and activity bucket, each blend input's share of the blender's absolute
    #: contributions to the returned items.
    reliance: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: Per scenario and probability output, reliability bins on the test impressions.
    calibration: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    k: int = 10


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
    test: pd.DataFrame  # the scenario's test events
    recent: pd.DataFrame | None = None  # the scenario's recent events, when a scorer asks


def evaluate(scenarios: Mapping[str, Scenario], plans: Mapping[str, ScenarioPlan],
             feature_sets: Mapping[str, FeatureSet], components: Mapping[str, Any],
             blenders: Mapping[str, Blender], store: Any,
             catalogue: Mapping[str, np.ndarray], train: pd.DataFrame, test: pd.DataFrame,
             cutoff: Any, k: int = 10, progress: bool = True,
             keep_lists: bool = False, baselines: Mapping[str, Blender] | None = None
             ) -> Evaluation:
    """Evaluate every scenario of ``plans`` with the given fitted components; each of
    ``baselines`` (other fitted blenders) is also ranked, as ``"<name> blend"``, over the
    same scores."""
    targets = {name: _targets(scenarios[name], train, test, catalogue[name]) for name in plans}
    features = as_of(store, feature_sets, catalogue,
                     {name: t.everyone.ids for name, t in targets.items()}, cutoff)
    result = Evaluation(k=k)
    for name, plan in plans.items():
        pipeline = Pipeline.from_plan(scenarios[name], plan, components, blenders, features,
                                      catalogue[name])
        if pipeline.sequence_length:
            targets[name].recent = H.recent_events(
                train[train[C.SCENARIO] == name], {name: pipeline.sequence_length})
        pipeline.baselines = dict(baselines or {})
        metrics, lists = evaluate_scenario(pipeline, targets[name], cutoff, k, progress,
                                           keep_lists, result)
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
                    shown, te)


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


def _rankings(scored: Scored, pipeline: Pipeline) -> dict[str, np.ndarray]:
    """What is ranked: each scorer by its objective task (``als``), or, for a scorer with
    several tasks, by each of them (``llm.click``, ``llm.like``); then any baseline
    blenders; then the blend."""
    scenario = pipeline.scenario
    ranked = {}
    for name, out in scored.outputs.items():
        if len(out) > 1:
            ranked.update({f"{name}.{task}": values for task, values in out.items()})
        else:
            ranked[name] = objective(out, scenario)
    for name, other in pipeline.baselines.items():
        if scored.outputs:
            ranked[f"{name} blend"] = np.asarray(other.blend(scored.outputs, scored.batch),
                                                 dtype=float)
    ranked[BLEND] = scored.final
    return ranked


def evaluate_scenario(pipeline: Pipeline, targets: _Targets, cutoff: Any, k: int,
                      progress: bool = True, keep_lists: bool = False,
                      into: Evaluation | None = None
                      ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """Metrics per ranker on one scenario, and (``keep_lists``) each user's top-K lists;
    ``into`` also receives the activity buckets, the comparison with the best single ranker,
    what the blender relied on and the calibration bins."""
    users, scenario = targets.users, pipeline.scenario
    if len(users) == 0 or len(pipeline.catalogue) == 0:
        return {}, {}
    top: dict[str, np.ndarray] = {}
    requests = _requests(targets, users, cutoff)
    bucket = O.activity_bucket(requests.history.lengths)
    reliance = _Reliance(len(O.BUCKETS))
    for rows, chunk in _chunks(requests, f"evaluating {scenario.name}", progress):
        scored = pipeline.score(chunk)
        for name, values in _rankings(scored, pipeline).items():
            best = scored.top(k, values)
            request = best.row_index()
            rank = np.arange(len(best.values)) - best.offsets[request]
            ranks = top.setdefault(name, np.full((len(users), k), -1, dtype=np.int64))
            ranks[rows[request], rank] = scored.codes[best.values]
        reliance.add(scored, scored.top(k).values, bucket[rows])
    names = list(top)

    relevant = targets.relevant
    rel_rows = pd.Index(users).get_indexer(relevant[C.USER_ID])
    rel_cols = pipeline.index.positions(relevant[C.ITEM_ID].to_numpy(dtype=object))
    keep = (rel_rows >= 0) & (rel_cols >= 0)
    rel_rows, rel_cols = rel_rows[keep], rel_cols[keep]
    n_relevant = np.bincount(rel_rows, minlength=len(users))
    gain_of, ideal = _objective_gains(pipeline, targets, k)
    draws = M.bootstrap_draws(len(users), seed=0)
    results: dict[str, dict[str, float]] = {}
    per_user: dict[str, dict[str, np.ndarray]] = {}
    width = len(pipeline.catalogue) + 1
    for name in names:
        hits = M.hits_matrix(top[name], rel_rows, rel_cols)
        measured = {f"{m}@{k}": v for m, v in M.per_user_ranking(hits, n_relevant).items()}
        keys = np.arange(len(users))[:, None] * width + top[name] + 1
        gains = np.where(top[name] >= 0, gain_of.reindex(keys.ravel()).fillna(0.0)
                         .to_numpy().reshape(keys.shape), 0.0)
        measured[f"objective@{k}"] = M.graded_ndcg(
            gains, ideal, pooled=scenario.objective_value is not None)
        per_user[name] = measured
        row: dict[str, float] = {}
        for metric, v in measured.items():
            row[metric] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            if metric.split("@")[0] in ("ndcg", "recall", "objective"):
                row[f"{metric} lo"], row[f"{metric} hi"] = M.interval(v, draws)
        row[f"coverage@{k}"] = M.coverage(top[name], len(pipeline.catalogue))
        row["users"] = float(len(users))
        results[name] = row
    for name, aucs in _pairwise_auc(pipeline, targets, cutoff, progress).items():
        results[name].update(aucs)
    calibration: dict[str, dict[str, Any]] = {}
    for name, point in _pointwise(pipeline, targets, cutoff, progress, calibration).items():
        results.setdefault(name, {}).update(point)
    if into is not None:
        objective_key = f"objective@{k}"
        into.buckets[scenario.name] = _by_bucket(per_user, bucket, objective_key, k)
        into.comparison[scenario.name] = _compare(per_user, objective_key, draws)
        if reliance.any():
            into.reliance[scenario.name] = reliance.shares()
        if calibration:
            into.calibration[scenario.name] = calibration
    lists = {}
    if keep_lists:
        lists = {str(u): {name: pipeline.catalogue[top[name][i][top[name][i] >= 0]].tolist()
                          for name in names} for i, u in enumerate(users)}
    return results, lists


def _objective_gains(pipeline: Pipeline, targets: _Targets, k: int
                     ) -> tuple[pd.Series, np.ndarray]:
    """Each relevant (ranked user, catalogue item)'s objective gain, keyed
    ``user row * (catalogue + 1) + item code + 1``; and each user's K best gains."""
    scenario, users = pipeline.scenario, targets.users
    gains = O.gains(targets.test, scenario, _values(pipeline, pipeline.features, scenario.name))
    pairs = targets.relevant[[C.USER_ID, C.ITEM_ID]].astype(str)
    g = gains.reindex(pd.MultiIndex.from_frame(pairs)).fillna(0.0).to_numpy() \
        if len(gains) else np.zeros(len(pairs))
    rows = pd.Index(users).get_indexer(pairs[C.USER_ID])
    cols = pipeline.index.positions(pairs[C.ITEM_ID].to_numpy(dtype=object))
    ok = (rows >= 0) & (cols >= 0) & (g > 0)
    rows, cols, g = rows[ok], cols[ok], g[ok]
    width = len(pipeline.catalogue) + 1
    keyed = pd.Series(g, index=rows.astype(np.int64) * width + cols + 1)
    keyed = keyed.groupby(level=0).max()
    order = np.lexsort((-g, rows))
    rank = np.arange(len(order)) - np.searchsorted(rows[order], rows[order])
    ideal = np.zeros((len(users), k))
    inside = rank < k
    ideal[rows[order][inside], rank[inside]] = g[order][inside]
    return keyed, ideal


def _by_bucket(per_user: Mapping[str, Mapping[str, np.ndarray]], bucket: np.ndarray,
               objective_key: str, k: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per activity bucket with users, per ranker: users, the objective with its interval,
    and NDCG."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for b, label in enumerate(O.BUCKETS):
        rows = np.flatnonzero(bucket == b)
        if not len(rows):
            continue
        draws = M.bootstrap_draws(len(rows), seed=b + 1)
        part: dict[str, dict[str, float]] = {}
        for name, values in per_user.items():
            v = values[objective_key][rows]
            lo, hi = M.interval(v, draws)
            ndcg = values[f"ndcg@{k}"][rows]
            part[name] = {"users": float(len(rows)),
                          objective_key: float(np.nanmean(v)) if np.isfinite(v).any()
                          else float("nan"), f"{objective_key} lo": lo,
                          f"{objective_key} hi": hi, f"ndcg@{k}": float(ndcg.mean())}
        out[label] = part
    return out


def _compare(per_user: Mapping[str, Mapping[str, np.ndarray]], objective_key: str,
             draws: np.ndarray) -> dict[str, Any]:
    """The best single ranker on the objective and the blend's paired difference from it."""
    singles = {n: float(np.nanmean(v[objective_key])) for n, v in per_user.items()
               if n != BLEND and not n.endswith(" blend") and np.isfinite(v[objective_key]).any()}
    if not singles or BLEND not in per_user:
        return {}
    best = max(singles, key=lambda n: singles[n])
    diff = per_user[BLEND][objective_key] - per_user[best][objective_key]
    lo, hi = M.interval(diff, draws)
    return {"metric": objective_key, "best_single": best, "best_single_value": singles[best],
            "blend": float(np.nanmean(per_user[BLEND][objective_key])),
            "difference": float(np.nanmean(diff)), "difference lo": lo, "difference hi": hi}


class _Reliance:
    """Sums of the blender's absolute contributions to the returned items, per bucket."""

    def __init__(self, buckets: int) -> None:
        self.sums: list[dict[str, float]] = [{} for _ in range(buckets)]

    def add(self, scored: Scored, rows: np.ndarray, bucket: np.ndarray) -> None:
        parts = scored.contributions
        if not parts or not len(rows):
            return
        which = bucket[scored.batch.request[rows]]
        for name, values in parts.items():
            size = np.bincount(which, weights=np.abs(np.nan_to_num(values[rows])),
                               minlength=len(self.sums))
            for b, total in enumerate(size):
                self.sums[b][name] = self.sums[b].get(name, 0.0) + float(total)

    def any(self) -> bool:
        return any(self.sums)

    def shares(self) -> dict[str, dict[str, float]]:
        out = {}
        for label, sums in zip(O.BUCKETS, self.sums, strict=True):
            total = sum(sums.values())
            if total > 0:
                out[label] = {n: v / total for n, v in sorted(sums.items(),
                                                             key=lambda kv: -kv[1])}
        return out


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
        for name, values in _rankings(scored, pipeline).items():
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


def _pointwise(pipeline: Pipeline, targets: _Targets, cutoff: Any, progress: bool,
               bins: dict[str, dict[str, Any]] | None = None
               ) -> dict[str, dict[str, float]]:
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
            if bins is not None:
                count, predicted, observed = M.calibration_bins(y[ok], p[ok])
                bins[name] = {"count": count.tolist(), "predicted": predicted.tolist(),
                              "observed": observed.tolist(),
                              "rate": float(y[ok].mean())}
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
        gains = O.gains(during[during[C.SCENARIO] == name], scenario,
                        _values(pipeline, features, name))
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


def _values(pipeline: Pipeline, features: Any, scenario: str) -> pd.Series | None:
    """Each catalogue item's objective value, when the scenario's objective has one."""
    column = O.value_column(pipeline.scenario)
    if column is None:
        return None
    table = features.items(scenario, pipeline.catalogue)
    if column not in table:
        return None
    return pd.Series(np.asarray(table[column], dtype=float), index=pipeline.catalogue)
