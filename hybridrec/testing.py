"""Conformance kit: the contracts every scorer, candidate source and blender must keep.

Subclass in your plugin's tests and provide two fixtures::

    from hybridrec.testing import ScorerContract, tiny_training_data

    class TestMyScorer(ScorerContract):
        @pytest.fixture
        def scorer(self):
            return MyScorer()

        @pytest.fixture
        def data(self):
            return tiny_training_data()

The kit gives a component exactly what the core would: the features it declares
(``feature_refs``) fetched through a real Feast repository built from ``data`` (point-in-time
joined for ``fit``, online for scoring; an undeclared feature is simply not there), its
history, and its recent events when it declares a ``sequence_length``. It checks shapes,
tasks, NaN for unknown items, that a row's score depends neither on the other rows nor on the
other requests of a batch, and a save/load round trip; a component that writes features
(``FeatureWriter``) must write them where the online store returns them.
``CandidateSourceContract`` and ``BlenderContract`` do the same for retrieval and blending.
Each checks determinism (the same answer twice, and from a new instance fit on the same
data); ``ScorerContract`` and ``BlenderContract`` also check that scoring and ``decide`` run
no Python loop per candidate (lines of Python counted for 10 000 and 20 000 candidates).
``ScenarioContract`` checks a scenario's declaration (name, events, objective, limits) and,
given data, that its events, items and users agree; ``SyntheticScenarioContract`` a plugin's
part of the synthetic world.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hybridrec import columns as C
from hybridrec import history as H
from hybridrec.contracts import (
    Blender,
    BlendExamples,
    CandidateSource,
    FeatureWriter,
    Ragged,
    RetrievalBatch,
    Scenario,
    ScoreBatch,
    ScoredRequests,
    Scorer,
    SyntheticScenario,
    SyntheticWorld,
    TrainingData,
    utc64,
)
from hybridrec.ids import Codes, IdIndex

__all__ = ["BlenderContract", "CandidateSourceContract", "KitWorld", "ScenarioContract",
           "ScorerContract", "SyntheticScenarioContract", "active_user", "events_frame",
           "kit_world", "tiny_training_data"]

UNKNOWN_ITEM = "no-such-item"
Ids = Sequence[str] | np.ndarray
#: The tiny world's events end here, so the kit's data never depends on the day it runs.
KIT_END = "2025-03-31T00:00:00Z"

STORE_YAML = """project: hybridrec_kit
provider: local
registry: data/registry.db
online_store:
  type: sqlite
  path: data/online.db
offline_store:
  type: duckdb
entity_key_serialization_version: 3
"""


def tiny_training_data(users: int = 60, items: int = 40, events: int = 3000,
                       seed: int = 0, scenarios: Sequence[str] = ("shop", "video"),
                       ads: int = 5) -> TrainingData:
    """A small world from the synthetic generator: ``scenarios`` among shop, video and ads
    (with the ad table when ads are in) and those installed plugins add to it
    (``SyntheticScenario``)."""
    from hybridrec.data.synthetic import SyntheticConfig, generate
    from hybridrec.plugins import get_registry

    data = generate(SyntheticConfig(users=users, items=items, ads=ads, events=events,
                                    seed=seed, end=KIT_END))
    names = list(scenarios)
    keep = data.events[C.SCENARIO].isin(names)
    items_frame = data.items[data.items[C.SCENARIO].isin(names)]
    return TrainingData(events=data.events[keep].reset_index(drop=True),
                        items=items_frame.reset_index(drop=True), users=data.users,
                        scenarios={n: get_registry().scenarios[n] for n in names},
                        ads=data.ads if "ads" in names else None)


def active_user(data: TrainingData, scenario: Scenario, rank: int = 0) -> tuple[str, list[str]]:
    """The scenario's ``rank``-th most active user and the items they interacted with."""
    events = data.scenario_events(scenario.name)
    user = str(events[C.USER_ID].value_counts().index[rank])
    return user, events.loc[events[C.USER_ID] == user, C.ITEM_ID].tolist()


def events_frame(rows: list[tuple[str, str, str, str, str]]) -> pd.DataFrame:
    """Build an event frame from ``(user, item, scenario, event_type, iso time)`` tuples."""
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.SCENARIO, C.EVENT_TYPE,
                                        C.EVENT_TIMESTAMP])
    frame[C.VALUE] = 1.0
    frame[C.EVENT_TIMESTAMP] = pd.to_datetime(frame[C.EVENT_TIMESTAMP], utc=True)
    return frame


# The world a component sees ---------------------------------------------------------------

_STORES: dict[str, Any] = {}


def _data_key(data: TrainingData) -> str:
    import hashlib

    from hybridrec.training.data import fingerprint

    digest = hashlib.sha256(fingerprint(data.events).encode())
    for frame in (data.items, data.users, *([data.ads] if data.ads is not None else [])):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def feature_store(data: TrainingData, fresh: bool = False) -> Any:
    """A real Feast repository holding ``data`` (every registered definition applied, the
    online store materialised), built once per distinct data set in a process (or anew, with
    ``fresh``) and removed when the process ends."""
    from hybridrec.features import EPOCH, feast_definitions, open_store

    key = _data_key(data)
    if fresh:
        key = f"{key}-fresh-{len(_STORES)}"
    if key not in _STORES:
        import atexit
        import shutil

        from hybridrec.data.tables import Dataset, write_dataset

        repo = Path(tempfile.mkdtemp(prefix="hybridrec-kit-"))
        atexit.register(shutil.rmtree, repo, ignore_errors=True)
        (repo / "feature_store.yaml").write_text(STORE_YAML)
        write_dataset(Dataset(events=data.events, users=data.users, items=data.items,
                              ads=data.ads), repo / "data")
        store = open_store(repo)
        store.apply(list(feast_definitions(repo).values()))
        store.materialize(start_date=EPOCH, end_date=datetime.now(UTC))
        _STORES[key] = store
    return _STORES[key]


#: ``ScorerContract``'s bound on the lines of Python a scorer runs per candidate.
LOOP_LINES = 0.1


def _python_lines(fn: Any, batch: Any) -> int:
    """How many lines of Python ``fn(batch)`` runs (its own and every Python function it
    calls)."""
    import sys

    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        fn(batch)
    finally:
        sys.settrace(previous)
    return count


class KitWorld:
    """``data`` as the core would hand it to ``component``: declared features only."""

    def __init__(self, data: TrainingData, component: Any) -> None:
        from hybridrec.features import (
            FeatureSet,
            FeatureSource,
            OnlineFeatures,
            applied_views,
            resolve_features,
        )

        self.data, self.component = data, component
        # batches are scored as of the end of the data, as evaluation scores at its cutoff
        self.as_of = utc64(pd.to_datetime(data.events[C.EVENT_TIMESTAMP], utc=True).max())
        refs = tuple(getattr(component, "feature_refs", ()))
        self.sequence_length = int(getattr(component, "sequence_length", 0))
        self.catalogues = {n: data.items.loc[data.items[C.SCENARIO] == n, C.ITEM_ID]
                           .to_numpy(str) for n in data.scenarios}
        self.store = feature_store(data) if refs else None
        if self.store is None:
            self.sets = {n: FeatureSet() for n in data.scenarios}
            self.features: Any = FeatureSource(self.sets)
            return
        views = applied_views(self.store)
        label = f"{type(component).__name__} {getattr(component, 'name', '?')!r}"
        self.sets = {n: resolve_features(views, s, {label: refs})
                     for n, s in data.scenarios.items()}
        self.features = OnlineFeatures(self.store, self.sets, self.catalogues)

    def training_data(self) -> TrainingData:
        """``data`` with the declared features joined point-in-time correctly."""
        if self.store is None:
            return self.data
        from hybridrec.features import join_events

        frames = [join_events(self.store, self.data.scenario_events(n), s, self.sets[n])
                  for n, s in self.data.scenarios.items()]
        return TrainingData(events=pd.concat(frames, ignore_index=True), items=self.data.items,
                            users=self.data.users, scenarios=self.data.scenarios,
                            ads=self.data.ads)

    def catalogue(self, scenario: Scenario) -> np.ndarray:
        return self.catalogues[scenario.name]

    def _history(self, scenario: Scenario, users: Sequence[str]) -> Ragged:
        seen = H.seen_pairs(self.data.scenario_events(scenario.name),
                            {scenario.name: scenario})
        return H.grouped(seen, np.asarray(users, dtype=object))

    def batch(self, scenario: Scenario, requests: Sequence[tuple[str, Ids]],
              coded: bool = False) -> ScoreBatch:
        """A batch of ``(user, item ids)`` requests, with what the component declared; with
        ``coded``, the candidates' catalogue codes too (``ScoreBatch.item_codes``), as the
        pipeline gives them."""
        users = np.array([u for u, _ in requests], dtype=object)
        candidates = Ragged.from_rows([np.asarray(items, dtype=str) for _, items in requests],
                                      dtype=str)
        sequences = None
        if self.sequence_length:
            recent = H.recent_events(self.data.events, {scenario.name: self.sequence_length})
            sequences = H.sequences_of(recent, users)
        return ScoreBatch(
            scenario=scenario, user_ids=users, candidates=candidates,
            user_features=self.features.users(scenario.name, users),
            item_features=self.features.items(scenario.name, candidates.values),
            history=self._history(scenario, list(users)), sequences=sequences,
            as_of=self.as_of, item_codes=self._codes(scenario, candidates) if coded else None)

    def _codes(self, scenario: Scenario, candidates: Ragged) -> Codes:
        index = IdIndex(self.catalogue(scenario))
        return Codes(index, index.positions(candidates.values))

    def retrieval(self, scenario: Scenario, requests: Sequence[tuple[str, Ids]]
                  ) -> RetrievalBatch:
        """A retrieval batch of ``(user, excluded item ids)`` requests."""
        users = [u for u, _ in requests]
        return RetrievalBatch(scenario=scenario, user_ids=np.array(users, dtype=object),
                              history=self._history(scenario, users),
                              exclude=Ragged.from_rows([list(e) for _, e in requests], dtype=str))


class _Kit:
    @pytest.fixture
    def world(self, scorer: Any, data: TrainingData) -> KitWorld:
        return KitWorld(data, scorer)

    @pytest.fixture
    def fitted(self, scorer: Any, world: KitWorld) -> Any:
        scorer.fit(world.training_data())
        return scorer

    @staticmethod
    def scenarios(model: Any, data: TrainingData) -> list[Scenario]:
        """The data's scenarios the model supports; none would make every check vacuous."""
        chosen = [s for s in data.scenarios.values() if model.supports(s)]
        assert chosen, (f"{type(model).__name__} supports none of the test data's scenarios "
                        f"({', '.join(data.scenarios)}); give the kit data it applies to")
        return chosen

    @staticmethod
    def users(data: TrainingData, scenario: Scenario) -> tuple[str, str]:
        return active_user(data, scenario)[0], active_user(data, scenario, rank=1)[0]

    def test_written_features_read_back(self, fitted: Any, world: KitWorld) -> None:
        """A ``FeatureWriter`` writes values for the catalogue into views the Feast registry
        has, and the online store returns them for every item written."""
        if not isinstance(fitted, FeatureWriter):
            pytest.skip(f"{type(fitted).__name__} writes no features")
        store = feature_store(world.data, fresh=True)  # nothing written there yet
        written = fitted.write_features(store, world.data.items, progress=False)
        views = {v.name: v for v in store.list_feature_views()}
        assert written and set(written) <= set(views), f"wrote {written}, views {sorted(views)}"
        assert any(written.values()), f"nothing written: {written}"
        ids = world.data.items[C.ITEM_ID].astype(str).tolist()
        for name, count in written.items():
            if not count:
                continue
            view = views[name]
            [key] = [e.name for e in view.entity_columns]
            refs = [f"{name}:{f.name}" for f in view.features]
            rows = store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids],
                                             full_feature_names=True).to_dict()
            for ref in refs:
                present = sum(v is not None for v in rows[ref.replace(":", "__")])
                assert present == count, f"{ref}: {present} items online, {count} written"

    def test_declarations(self, scorer: Any, world: KitWorld) -> None:
        """``feature_refs`` are ``view:feature`` strings the Feast registry resolves (the
        world raises naming the bad one), ``sequence_length`` a count."""
        assert all(isinstance(r, str) and ":" in r for r in scorer.feature_refs)
        assert isinstance(scorer.sequence_length, int) and scorer.sequence_length >= 0


class ScorerContract(_Kit):
    """Tests every Scorer must pass. Needs fixtures ``scorer`` (unfitted) and ``data``."""

    def test_declares_name_and_tasks(self, scorer: Scorer) -> None:
        assert isinstance(scorer, Scorer)
        assert isinstance(scorer.name, str) and scorer.name
        assert scorer.tasks and all(isinstance(t, str) for t in scorer.tasks)

    def test_scores_every_candidate_for_its_tasks(self, fitted: Scorer, world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            items = world.catalogue(scenario)
            user = self.users(world.data, scenario)[0]
            out = fitted.score(world.batch(scenario, [(user, items)]))
            assert set(out) <= set(fitted.tasks) and out, f"tasks {set(out)} vs {fitted.tasks}"
            for task, values in out.items():
                values = np.asarray(values)
                assert values.shape == (len(items),), f"{task}: shape {values.shape}"
                assert np.issubdtype(values.dtype, np.floating)
                assert np.isfinite(values).any(), f"{task}: no finite score for known items"

    def test_unknown_item_has_no_score(self, fitted: Scorer, world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            items = np.r_[world.catalogue(scenario)[:3], [UNKNOWN_ITEM]]
            user = self.users(world.data, scenario)[0]
            for task, values in fitted.score(world.batch(scenario, [(user, items)])).items():
                assert np.isnan(values[-1]), f"{task}: unknown item scored {values[-1]}"

    def test_scores_the_same_given_catalogue_codes(self, fitted: Scorer,
                                                   world: KitWorld) -> None:
        """Looking candidates up with ``batch.positions(index)`` or by id agrees."""
        for scenario in self.scenarios(fitted, world.data):
            items = np.r_[world.catalogue(scenario)[::-1][:20], [UNKNOWN_ITEM]]
            user = self.users(world.data, scenario)[0]
            plain = fitted.score(world.batch(scenario, [(user, items)]))
            coded = fitted.score(world.batch(scenario, [(user, items)], coded=True))
            assert set(plain) == set(coded)
            for task in plain:
                np.testing.assert_array_equal(plain[task], coded[task], err_msg=task)

    def test_scores_do_not_depend_on_batch_composition(self, fitted: Scorer,
                                                       world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            items = world.catalogue(scenario)[:20]
            user = self.users(world.data, scenario)[0]
            whole = fitted.score(world.batch(scenario, [(user, items)]))
            reversed_ = fitted.score(world.batch(scenario, [(user, items[::-1])]))
            half = fitted.score(world.batch(scenario, [(user, items[:10])]))
            for task in whole:
                np.testing.assert_allclose(whole[task][::-1], reversed_[task], rtol=1e-6)
                np.testing.assert_allclose(whole[task][:10], half[task], rtol=1e-6)

    def test_requests_in_one_batch_are_scored_as_if_alone(self, fitted: Scorer,
                                                          world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            items = world.catalogue(scenario)
            first, second = self.users(world.data, scenario)
            together = fitted.score(world.batch(scenario, [(first, items[:15]),
                                                           (second, items[5:])]))
            alone = [fitted.score(world.batch(scenario, [(first, items[:15])])),
                     fitted.score(world.batch(scenario, [(second, items[5:])]))]
            for task in together:
                np.testing.assert_allclose(
                    together[task], np.concatenate([alone[0][task], alone[1][task]]),
                    rtol=1e-6, err_msg=f"{task}: a request's scores changed with its batch")

    def test_a_user_nothing_is_known_of(self, fitted: Scorer, world: KitWorld) -> None:
        """No history, no features, no events: a score or NaN per item, never an error."""
        for scenario in self.scenarios(fitted, world.data):
            items = world.catalogue(scenario)[:10]
            out = fitted.score(world.batch(scenario, [("kit-stranger", items)]))
            for task, values in out.items():
                values = np.asarray(values, dtype=float)
                assert values.shape == (len(items),), task
                assert not np.isinf(values).any(), f"{task}: infinite score"

    def test_empty_batch(self, fitted: Scorer, world: KitWorld) -> None:
        scenario = self.scenarios(fitted, world.data)[0]
        user = self.users(world.data, scenario)[0]
        for values in fitted.score(world.batch(scenario, [(user, [])])).values():
            assert len(values) == 0

    def test_no_python_loop_per_candidate(self, fitted: Scorer, world: KitWorld) -> None:
        """Per-candidate work is array work: scoring 20 000 distinct candidates runs hardly
        more lines of Python than scoring 10 000 (a loop over candidates runs at least one
        more per candidate; both sizes take the same branches of size-dependent code).
        Counted, not timed, so a busy machine cannot fail it."""
        scenario = self.scenarios(fitted, world.data)[0]
        user = self.users(world.data, scenario)[0]
        ids = np.r_[world.catalogue(scenario), [f"kit-item-{i}" for i in range(20_000)]]
        small, large = (world.batch(scenario, [(user, ids[:n])], coded=True)
                        for n in (10_000, 20_000))
        fitted.score(small)  # first-call work (caches, lazy imports) is not per candidate
        per_candidate = (_python_lines(fitted.score, large) -
                         _python_lines(fitted.score, small)) / (len(large) - len(small))
        assert per_candidate < LOOP_LINES, (
            f"{type(fitted).__name__} runs {per_candidate:.2f} lines of Python per "
            f"candidate (look for a loop over candidates; array work runs under {LOOP_LINES})")

    def test_deterministic(self, fitted: Scorer, world: KitWorld) -> None:
        """The same batch scores the same twice, and a new instance of the same config fit
        on the same data scores it the same (seed every random draw)."""
        again = type(fitted)(**fitted.config)
        again.fit(world.training_data())
        for scenario in self.scenarios(fitted, world.data):
            first, second = self.users(world.data, scenario)
            batch = world.batch(scenario, [(first, world.catalogue(scenario)),
                                           (second, world.catalogue(scenario)[::-1])])
            once, twice, refit = fitted.score(batch), fitted.score(batch), again.score(batch)
            assert once.keys() == twice.keys() == refit.keys()
            for task in once:
                np.testing.assert_array_equal(once[task], twice[task], err_msg=task)
                np.testing.assert_allclose(once[task], refit[task], rtol=1e-5, atol=1e-8,
                                           err_msg=f"{task}: fit again, scored otherwise")

    def test_save_load_round_trip(self, fitted: Scorer, world: KitWorld, tmp_path: Path) -> None:
        fitted.save(tmp_path)
        loaded = type(fitted).load(tmp_path)
        for scenario in self.scenarios(fitted, world.data):
            user = self.users(world.data, scenario)[0]
            batch = world.batch(scenario, [(user, world.catalogue(scenario))])
            before, after = fitted.score(batch), loaded.score(batch)
            assert before.keys() == after.keys()
            for task in before:
                np.testing.assert_allclose(before[task], after[task], rtol=1e-6)


class CandidateSourceContract(_Kit):
    """Tests every CandidateSource must pass. Needs fixtures ``source`` and ``data``."""

    @pytest.fixture
    def scorer(self, source: CandidateSource) -> CandidateSource:
        return source

    def test_retrieves_catalogue_items_without_repeats(self, fitted: CandidateSource,
                                                       world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            users = self.users(world.data, scenario)
            got = fitted.retrieve(world.retrieval(scenario, [(u, ()) for u in users]), 10)
            assert isinstance(got, Ragged) and len(got) == 2
            for row in range(2):
                assert 0 < len(got[row]) <= 10
                assert len(set(got[row])) == len(got[row])
                assert set(got[row]) <= set(world.catalogue(scenario))

    def test_deterministic(self, fitted: CandidateSource, world: KitWorld) -> None:
        """The same requests retrieve the same lists twice, and from a new instance of the
        same config fit on the same data."""
        again = type(fitted)(**fitted.config)
        again.fit(world.training_data())
        for scenario in self.scenarios(fitted, world.data):
            requests: list[tuple[str, Ids]] = [(u, []) for u in self.users(world.data, scenario)]
            lists = [source.retrieve(world.retrieval(scenario, requests), 20)
                     for source in (fitted, fitted, again)]
            for other in lists[1:]:
                np.testing.assert_array_equal(lists[0].offsets, other.offsets)
                np.testing.assert_array_equal(lists[0].values, other.values)

    def test_respects_exclude(self, fitted: CandidateSource, world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            user = self.users(world.data, scenario)[0]
            first = fitted.retrieve(world.retrieval(scenario, [(user, ())]), 5)[0]
            again = fitted.retrieve(world.retrieval(scenario, [(user, first[:3])]), 5)[0]
            assert not set(first[:3]) & set(again)
            assert len(again) == 5

    def test_requests_in_one_batch_are_retrieved_as_if_alone(self, fitted: CandidateSource,
                                                             world: KitWorld) -> None:
        for scenario in self.scenarios(fitted, world.data):
            first, second = self.users(world.data, scenario)
            shared = fitted.retrieve(world.retrieval(scenario, [(first, ())]), 4)[0][:2]
            requests = [(first, ()), (second, tuple(shared))]
            together = fitted.retrieve(world.retrieval(scenario, requests), 8)
            for row, request in enumerate(requests):
                alone = fitted.retrieve(world.retrieval(scenario, [request]), 8)[0]
                assert together[row].tolist() == alone.tolist()

    def test_save_load_round_trip(self, fitted: CandidateSource, world: KitWorld,
                                  tmp_path: Path) -> None:
        fitted.save(tmp_path)
        loaded = type(fitted).load(tmp_path)
        for scenario in self.scenarios(fitted, world.data):
            batch = world.retrieval(scenario, [(u, ()) for u in self.users(world.data,
                                                                           scenario)])
            before, after = fitted.retrieve(batch, 10), loaded.retrieve(batch, 10)
            assert before.values.tolist() == after.values.tolist()
            assert before.offsets.tolist() == after.offsets.tolist()


class BlenderContract(_Kit):
    """Tests every Blender must pass. Needs fixtures ``blender`` (unfitted) and ``data``.
    Blends random scores of two made-up scorers, with gaps (NaN). A blender that ``learns``
    is fit with examples of the same made-up scores, labelled by the items each user acted
    on in ``data``."""

    @pytest.fixture
    def scorer(self, blender: Blender) -> Blender:
        return blender

    @pytest.fixture
    def fitted(self, scorer: Any, world: KitWorld) -> Any:
        return self.fit(scorer, world)

    def fit(self, scorer: Any, world: KitWorld) -> Any:
        """``scorer`` (a blender) fit as training would, on made-up scores when it learns."""
        if not scorer.learns:
            scorer.fit(world.training_data())
            return scorer
        examples = BlendExamples()
        for scenario in self.scenarios(scorer, world.data):
            users = list(world.data.scenario_events(scenario.name)[C.USER_ID]
                         .value_counts().index[:8])
            items = world.catalogue(scenario)
            batch = world.batch(scenario, [(u, items) for u in users])
            seen = H.seen_pairs(world.data.scenario_events(scenario.name),
                                {scenario.name: scenario})
            acted = set(zip(seen[C.USER_ID], seen[C.ITEM_ID], strict=True))
            labels = np.array([float((u, i) in acted) for u, i in zip(
                batch.user_ids[batch.request], batch.item_ids, strict=True)])
            examples.scenarios[scenario.name] = [
                ScoredRequests(batch, self.inputs(batch), labels)]
        scorer.fit(world.training_data(), examples)
        return scorer

    def fit_again(self, fitted: Blender, world: KitWorld) -> Blender:
        """A new instance of ``fitted``'s config fit on the same data (override for a
        blender that is not built from its config alone)."""
        return self.fit(type(fitted)(**fitted.config), world)

    @staticmethod
    def inputs(batch: ScoreBatch, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
        rng = np.random.default_rng(seed)
        a = rng.normal(size=len(batch))
        a[::4] = np.nan
        return {"kit_a": {"click": a}, "kit_b": {"click": rng.random(len(batch)),
                                                 "like": rng.normal(size=len(batch))}}

    def two_requests(self, fitted: Blender, world: KitWorld) -> ScoreBatch:
        scenario = self.scenarios(fitted, world.data)[0]
        items = world.catalogue(scenario)
        first, second = self.users(world.data, scenario)
        return world.batch(scenario, [(first, items[:12]), (second, items[4:])])

    def test_one_finite_score_per_row(self, fitted: Blender, world: KitWorld) -> None:
        batch = self.two_requests(fitted, world)
        out = np.asarray(fitted.blend(self.inputs(batch), batch))
        assert out.shape == (len(batch),) and np.isfinite(out).all()

    def test_any_subset_of_inputs(self, fitted: Blender, world: KitWorld) -> None:
        batch = self.two_requests(fitted, world)
        scores = self.inputs(batch)
        for subset in ({"kit_a": scores["kit_a"]}, {"kit_b": scores["kit_b"]}, {}):
            out = np.asarray(fitted.blend(subset, batch))
            assert out.shape == (len(batch),) and np.isfinite(out).all(), subset.keys()
        nothing = {"kit_a": {"click": np.full(len(batch), np.nan)}}
        assert np.isfinite(np.asarray(fitted.blend(nothing, batch))).all()

    def test_requests_in_one_batch_are_blended_as_if_alone(self, fitted: Blender,
                                                           world: KitWorld) -> None:
        batch = self.two_requests(fitted, world)
        scores = self.inputs(batch)
        together = np.asarray(fitted.blend(scores, batch))
        for r in range(batch.n_requests):
            rows = slice(batch.offsets[r], batch.offsets[r + 1])
            alone = world.batch(batch.scenario, [(batch.user_ids[r], batch.item_ids[rows])])
            part = {s: {t: v[rows] for t, v in tasks.items()} for s, tasks in scores.items()}
            np.testing.assert_allclose(np.asarray(fitted.blend(part, alone)), together[rows],
                                       rtol=1e-9)

    def test_deterministic(self, fitted: Blender, world: KitWorld) -> None:
        """The same scores blend the same twice, and with a new instance of the same config
        fit on the same data (seed every random draw)."""
        batch = self.two_requests(fitted, world)
        scores = self.inputs(batch)
        again = self.fit_again(fitted, world)
        once = np.asarray(fitted.blend(scores, batch))
        np.testing.assert_array_equal(once, np.asarray(fitted.blend(scores, batch)))
        np.testing.assert_allclose(once, np.asarray(again.blend(scores, batch)), rtol=1e-6,
                                   atol=1e-9, err_msg="fit again, blended otherwise")

    def test_no_python_loop_per_candidate(self, fitted: Blender, world: KitWorld) -> None:
        """``decide``, what serving calls, runs hardly more lines of Python for 20 000
        candidates than for 10 000 (as ``ScorerContract`` checks scorers)."""
        scenario = self.scenarios(fitted, world.data)[0]
        user = self.users(world.data, scenario)[0]
        ids = np.r_[world.catalogue(scenario), [f"kit-item-{i}" for i in range(20_000)]]
        small, large = (world.batch(scenario, [(user, ids[:n])], coded=True)
                        for n in (10_000, 20_000))

        def decide(batch: ScoreBatch) -> Any:
            return fitted.decide(inputs[len(batch)], batch)

        inputs = {len(b): self.inputs(b) for b in (small, large)}
        decide(small)
        per_candidate = (_python_lines(decide, large) - _python_lines(decide, small)) / (
            len(large) - len(small))
        assert per_candidate < LOOP_LINES, (
            f"{type(fitted).__name__} runs {per_candidate:.2f} lines of Python per "
            f"candidate (look for a loop over candidates; array work runs under {LOOP_LINES})")

    def test_save_load_round_trip(self, fitted: Blender, world: KitWorld,
                                  tmp_path: Path) -> None:
        fitted.save(tmp_path)
        loaded = type(fitted).load(tmp_path)
        batch = self.two_requests(fitted, world)
        scores = self.inputs(batch)
        np.testing.assert_allclose(fitted.blend(scores, batch), loaded.blend(scores, batch))

    def test_observing_later_data_keeps_it_blending(self, fitted: Blender,
                                                    world: KitWorld) -> None:
        """Training calls ``observe`` with the scorers' data after each later fit: the
        blender still gives one finite score per row."""
        fitted.observe(world.training_data())
        batch = self.two_requests(fitted, world)
        out = np.asarray(fitted.blend(self.inputs(batch), batch))
        assert out.shape == (len(batch),) and np.isfinite(out).all()

    def test_contributions_explain_the_blend(self, fitted: Blender, world: KitWorld) -> None:
        """Where a blender says why, its contributions align with the rows and add up to
        the blended score, up to a constant per request."""
        batch = self.two_requests(fitted, world)
        scores = self.inputs(batch)
        parts = fitted.contributions(scores, batch)
        if parts is None:
            pytest.skip(f"blender {fitted.name!r} does not report contributions")
        assert parts, "contributions, when given, name at least one input"
        for key, values in parts.items():
            assert np.asarray(values).shape == (len(batch),), key
            assert np.isfinite(np.asarray(values, dtype=float)).all(), key
        gap = np.asarray(fitted.blend(scores, batch)) - sum(
            np.asarray(v, dtype=float) for v in parts.values())
        for r in range(batch.n_requests):
            rows = gap[batch.offsets[r]:batch.offsets[r + 1]]
            np.testing.assert_allclose(rows, rows[0], atol=1e-9)

    def test_decide_reports_its_decision(self, fitted: Blender, world: KitWorld) -> None:
        """``decide`` gives a score per row, one drawn arm per request with every arm's
        probability (summing to 1, the drawn one above 0), the scores of the other arms it
        could have drawn, and contributions that add up to its scores."""
        batch = self.two_requests(fitted, world)
        scores = self.inputs(batch)
        out = fitted.decide(scores, batch)
        assert np.asarray(out.scores).shape == (len(batch),)
        assert np.isfinite(np.asarray(out.scores, dtype=float)).all()
        assert len(out.arms) == len(out.probabilities) == batch.n_requests
        for arm, probs in zip(out.arms, out.probabilities, strict=True):
            assert probs[arm] > 0 and abs(sum(probs.values()) - 1.0) < 1e-6, probs
            assert all(a == arm or p == 0 or a in out.arm_scores for a, p in probs.items())
        for values in out.arm_scores.values():
            assert np.asarray(values).shape == (len(batch),)
        if out.contributions:
            np.testing.assert_allclose(sum(out.contributions.values()), out.scores,
                                       atol=1e-9)


class ScenarioContract:
    """Tests every Scenario must pass. Needs fixtures ``scenario`` and ``data`` (a
    ``TrainingData`` holding the scenario's events, items and users, or None to check the
    declaration alone)."""

    def test_name_fits_urls_metrics_and_configuration(self, scenario: Scenario) -> None:
        assert isinstance(scenario, Scenario)
        assert isinstance(scenario.name, str) and re.fullmatch(r"[a-z][a-z0-9_]*",
                                                                scenario.name), (
            f"scenario name {scenario.name!r}: lowercase letters, digits and underscores, "
            "starting with a letter (it appears in URLs, metric labels and config tables)")

    def test_events_positives_and_objective_agree(self, scenario: Scenario) -> None:
        weights = dict(scenario.event_weights)
        assert weights, "event_weights names no event type"
        for event, weight in weights.items():
            assert isinstance(event, str) and np.isfinite(float(weight)), (event, weight)
        assert set(scenario.positive_events) <= set(weights), (
            f"positive_events {scenario.positive_events} outside event_weights {list(weights)}")
        gains = scenario.gains
        assert gains and all(np.isfinite(g) and g > 0 for g in gains.values()), (
            f"the objective gains nothing from any event: {gains}")
        assert set(gains) <= set(weights), f"objective_events {list(gains)} not accepted"
        assert scenario.objective and all(isinstance(t, str) and t
                                          for t in scenario.objective), scenario.objective
        assert scenario.item_keys and all(isinstance(k, str) and k for k in scenario.item_keys)

    def test_limits_are_usable(self, scenario: Scenario) -> None:
        assert 1 <= scenario.default_k <= scenario.max_k <= scenario.n_candidates, (
            f"need 1 <= default_k ({scenario.default_k}) <= max_k ({scenario.max_k}) <= "
            f"n_candidates ({scenario.n_candidates})")
        assert 0.0 <= scenario.exploration <= 1.0, scenario.exploration
        assert scenario.adaptation_window >= 1 and scenario.breaker_failures >= 1
        assert scenario.scorer_budget_ms >= 0 and scenario.breaker_cooldown >= 0

    def test_configuration_can_override_it(self, scenario: Scenario) -> None:
        """Training configs override fields per scenario (``dataclasses.replace``)."""
        import dataclasses

        changed = dataclasses.replace(scenario, exploration=0.0, default_k=1)
        assert (changed.name, changed.exploration, changed.default_k) == \
            (scenario.name, 0.0, 1)

    def test_data_holds_its_events_and_items(self, scenario: Scenario,
                                             data: TrainingData | None) -> None:
        if data is None:
            pytest.skip(f"no data given for scenario {scenario.name!r}")
        assert scenario.name in data.scenarios, "the data does not declare the scenario"
        events = data.scenario_events(scenario.name)
        assert len(events), f"no events of scenario {scenario.name!r}"
        unknown = sorted(set(events[C.EVENT_TYPE].astype(str)) - set(scenario.event_weights))
        assert not unknown, f"event types {unknown} the scenario does not accept"
        assert events[C.EVENT_TYPE].isin(list(scenario.gains)).any(), \
            "no event gains towards the objective: nothing to learn or evaluate"
        items = set(data.items.loc[data.items[C.SCENARIO] == scenario.name, C.ITEM_ID]
                    .astype(str))
        missing = set(events[C.ITEM_ID].astype(str)) - items
        assert not missing, f"{len(missing)} items with events are not in the item table, " \
                            f"e.g. {sorted(missing)[:3]}"
        users = set(data.users[C.USER_ID].astype(str))
        strangers = set(events[C.USER_ID].astype(str)) - users
        assert not strangers, f"{len(strangers)} users with events are not in the user " \
                              f"table, e.g. {sorted(strangers)[:3]}"


def kit_world(users: int = 80, events: int = 4000, items: int = 40, weeks: int = 4,
              seed: int = 0) -> SyntheticWorld:
    """A small synthetic world, as ``hybridrec data synthetic`` hands it to a plugin's
    ``SyntheticScenario``."""
    return _kit_world(users, events, items, weeks, seed)[0]


def _kit_world(users: int, events: int, items: int, weeks: int, seed: int
               ) -> tuple[SyntheticWorld, set[str]]:
    """The world and the ids of the built-in scenarios' items in it."""
    from hybridrec.data.synthetic import SyntheticConfig, generate

    config = SyntheticConfig(users=users, items=items, ads=2, events=events, weeks=weeks,
                             seed=seed, end=KIT_END)
    core = generate(config, plugins=False)
    end = pd.Timestamp(config.end)
    world = SyntheticWorld(users=core.users.drop(columns=[C.EVENT_TIMESTAMP]),
                           start=end - pd.Timedelta(weeks=weeks), end=end, events=events,
                           items=items, seed=seed)
    return world, set(core.items[C.ITEM_ID].astype(str))


class SyntheticScenarioContract:
    """Tests every SyntheticScenario must pass. Needs fixture ``synthetic`` (an instance)."""

    @staticmethod
    def tables(synthetic: SyntheticScenario, users: int = 80, events: int = 4000,
               items: int = 40, weeks: int = 4, seed: int = 0
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """What the core keeps of ``generate``'s tables in a small world; raises naming
        what it refuses (ids the built-in items hold, event types the scenario does not
        accept, events outside the span or before their item is listed)."""
        from hybridrec.data.synthetic import checked_tables
        from hybridrec.plugins import get_registry

        world, taken = _kit_world(users, events, items, weeks, seed)
        made_items, made_events = synthetic.generate(world)
        scenario = get_registry().scenarios.get(synthetic.name)
        return checked_tables(synthetic.name, made_items, made_events, world, taken,
                              scenario.event_types if scenario is not None else None)

    def test_its_scenario_is_registered(self, synthetic: SyntheticScenario) -> None:
        from hybridrec.plugins import get_registry

        assert synthetic.name in get_registry().scenarios, (
            f"no registered Scenario is named {synthetic.name!r}: register one beside it")

    def test_tables_fit_the_world(self, synthetic: SyntheticScenario) -> None:
        """Events of the world's users on the scenario's own items, within its span, in the
        core's schema (``checked_tables`` raises naming the first problem)."""
        items, events = self.tables(synthetic)
        assert len(items) and len(events)

    def test_tiny_worlds_too(self, synthetic: SyntheticScenario) -> None:
        """One user, one item per catalogue, a small budget, one week, under ten seeds."""
        for seed in range(10):
            for users, events, items in ((1, 50, 1), (5, 300, 2), (40, 2000, 3)):
                self.tables(synthetic, users=users, events=events, items=items, weeks=1,
                            seed=seed)

    def test_the_same_world_gives_the_same_tables(self, synthetic: SyntheticScenario) -> None:
        first = self.tables(synthetic, seed=3)
        again = self.tables(type(synthetic)(), seed=3)
        for a, b in zip(first, again, strict=True):
            pd.testing.assert_frame_equal(a, b)
        other = self.tables(synthetic, seed=4)[1]
        assert not (len(other) == len(first[1]) and other.equals(first[1])), \
            "another seed gave the same events: draw from world.rng(name)"

    def test_its_size_follows_the_event_budget(self, synthetic: SyntheticScenario) -> None:
        small = len(self.tables(synthetic, events=2000)[1])
        large = len(self.tables(synthetic, events=8000)[1])
        assert large > 2 * small, f"{small} events for a budget of 2000, {large} for 8000"
