"""Training in three slices when a blender learns from scores: scorers fit before the blend
slice score it, the blender learns from those scores, and the test slice reaches neither."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hybridrec.plugins as P
from hybridrec import columns as C
from hybridrec.builtin.popularity import PopularityScorer
from hybridrec.contracts import Blender, BlendExamples, ScoreBatch, TrainingData
from hybridrec.plugins import build_registry
from hybridrec.testing import BlenderContract, tiny_training_data
from hybridrec.workspace import Workspace

SEEN: dict[str, list] = {"scorer": [], "blender": [], "examples": [], "observed": [],
                         "split": []}


class RecordingScorer(PopularityScorer):
    """Popularity that remembers the latest event of every fit."""

    name = "recording"

    def fit(self, data: TrainingData) -> None:
        SEEN["scorer"].append(pd.Timestamp(data.events[C.EVENT_TIMESTAMP].max()))
        SEEN["split"].append(data.split)
        super().fit(data)


class RecordingBlender(Blender):
    """Learns nothing but what it was shown; blends by the recording scorer."""

    name = "recording_blender"
    learns = True

    def fit(self, data: TrainingData, examples: BlendExamples | None = None) -> None:
        SEEN["blender"].append(pd.Timestamp(data.events[C.EVENT_TIMESTAMP].max()))
        SEEN["examples"].append(examples)

    def observe(self, data: TrainingData) -> None:
        SEEN["observed"].append(pd.Timestamp(data.events[C.EVENT_TIMESTAMP].max()))

    def blend(self, scores, batch: ScoreBatch) -> np.ndarray:
        values = scores.get("recording", {}).get("click", np.zeros(len(batch)))
        return np.nan_to_num(np.asarray(values, dtype=float))

    def save(self, path: Path) -> None:
        (path / "recording").write_text("")

    @classmethod
    def load(cls, path: Path) -> RecordingBlender:
        return cls()


def register_scorers(register):
    register(RecordingScorer)


def register_blenders(register):
    register(RecordingBlender)


CONFIG = {"scenarios": {"shop": {"scorers": ["recording"], "blender": "recording_blender",
                                 "candidate_sources": ["popularity"]}}}


@pytest.fixture
def recording(monkeypatch):
    import types

    from hybridrec import hookimpl

    module = types.ModuleType("recording")
    module.register_scorers = hookimpl(register_scorers)
    module.register_blenders = hookimpl(register_blenders)
    monkeypatch.setattr(P, "_registry", build_registry(extra=[("recording", module)]))
    for key in SEEN:
        SEEN[key].clear()


@pytest.fixture
def recorded(recording, workspace_copy, tmp_path):
    from hybridrec import training

    ws = Workspace(workspace_copy.repo, tmp_path / "stacked-bundles")
    result = training.run(ws, scenarios=["shop"], config=CONFIG, progress=False)
    manifest = __import__("json").loads((result.path / "manifest.json").read_text())
    return manifest["data_window"], result


def test_no_blend_or_test_label_reaches_the_scorers_and_no_test_label_the_blender(
        recorded, workspace_copy):
    window, _ = recorded
    blend_cut, test_cut = (pd.Timestamp(window["blend_cutoff"]),
                           pd.Timestamp(window["test_cutoff"]))
    assert blend_cut < test_cut
    before_blend, before_test, everything = SEEN["scorer"]
    assert before_blend < blend_cut  # the scorers that score the blend slice
    assert blend_cut <= before_test < test_cut  # the scorers evaluated on the test slice
    assert everything >= test_cut  # the refit on the whole window
    [blender_data] = SEEN["blender"]  # fit once, kept through the refit
    assert blender_data < blend_cut
    # told of the scorers' data after each later fit: before evaluation, none of the test
    # slice; then the whole window, for the bundle
    assert SEEN["observed"] == [before_test, everything]
    assert SEEN["split"] == ["temporal"] * 3
    [examples] = SEEN["examples"]
    parts = examples.scenarios["shop"]
    assert parts and examples.rows("shop") > 0
    for part in parts:
        assert part.batch.as_of == np.datetime64(blend_cut.tz_convert(None), "us")
        assert set(part.scores) == {"recording"}
        assert len(part.labels) == len(part.batch) and (part.labels >= 0).all()
    assert sum(float(p.labels.sum()) for p in parts) > 0
    # every positive label is an event of the blend slice
    events = pd.read_parquet(workspace_copy.repo / "data" / C.EVENTS_FILE)
    shop = events[events[C.SCENARIO] == "shop"]
    ts = shop[C.EVENT_TIMESTAMP]
    in_slice = shop[(ts >= blend_cut) & (ts < test_cut)
                    & shop[C.EVENT_TYPE].isin(["cart", "purchase"])]
    allowed = set(zip(in_slice[C.USER_ID], in_slice[C.ITEM_ID], strict=True))
    for part in parts:
        users = part.batch.user_ids[part.batch.request]
        positive = part.labels > 0
        pairs = set(zip(users[positive], part.batch.item_ids[positive], strict=True))
        assert pairs <= allowed


def test_the_scorers_are_told_how_the_run_holds_out_its_test(recording, workspace_copy,
                                                           tmp_path):
    """So that a scorer tuning on a validation slice draws it as the test is drawn."""
    from hybridrec import training

    training.run(Workspace(workspace_copy.repo, tmp_path / "b"), scenarios=["shop"],
                 config=CONFIG, progress=False, split="random", write=False)
    assert SEEN["split"] == ["random"] * 2  # the blend slice's scorers, then evaluation's


class TestLearningBlenderKit(BlenderContract):
    """The conformance kit fits a learning blender with examples."""

    @pytest.fixture
    def blender(self):
        return RecordingBlender()

    @pytest.fixture
    def data(self):
        return tiny_training_data()

    def test_the_kit_gave_it_labelled_examples(self, fitted):
        examples = SEEN["examples"][-1]
        assert examples is not None and examples.scenarios
        for parts in examples.scenarios.values():
            assert parts[0].labels.sum() > 0 and set(parts[0].scores) == {"kit_a", "kit_b"}
