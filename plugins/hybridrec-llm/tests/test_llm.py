"""The llm scorer's training behaviour: tasks learn, weights adapt, early stopping, LoRA,
distillation, persistence and the conformance kit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hybridrec_llm import LlmScorer
from hybridrec_llm import embeddings as E
from hybridrec_llm.testing import FAST, tiny_bert

from hybridrec import columns as C
from hybridrec.testing import KitWorld, ScorerContract, active_user, tiny_training_data


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny randomly initialised BERT, built from a config in code."""
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def data():
    return tiny_training_data(users=80, items=40, events=4000)


def scorer_with(encoder_dir: Path, **overrides) -> LlmScorer:
    return LlmScorer(encoder=str(encoder_dir), **{**FAST, **overrides})


@pytest.fixture(scope="module")
def world(data, encoder_dir):
    return KitWorld(data, scorer_with(encoder_dir))


@pytest.fixture(scope="module")
def trained(world, encoder_dir):
    scorer = scorer_with(encoder_dir)
    scorer.fit(world.training_data(), progress=False)
    return scorer


class TestConformance(ScorerContract):
    @pytest.fixture
    def scorer(self, encoder_dir):
        return scorer_with(encoder_dir, epochs=2)

    @pytest.fixture
    def data(self, data):
        return data


def test_every_task_validation_loss_falls(trained):
    for name in ("shop", "video"):
        info = trained.models[name].info
        first, best = info["initial_validation_loss"], info["validation_loss"]
        assert set(first) == set(trained.models[name].info["tasks"])
        for task, loss in best.items():
            assert loss < first[task], f"{name} {task}: {loss} not below {first[task]}"


def test_tasks_follow_the_scenario_labels(trained):
    # shop: purchases are strong positives, no ratings; video: likes, no ratings
    assert trained.models["shop"].tasks == ("click", "like")
    assert trained.models["video"].tasks == ("click", "like")
    assert "profile" in trained.models["shop"].info["tasks"]


@pytest.mark.parametrize("weighting", ["uncertainty", "gradnorm"])
def test_adaptive_weights_move_away_from_equal(world, encoder_dir, weighting):
    scorer = scorer_with(encoder_dir, task_weighting=weighting, epochs=3, patience=3)
    scorer.fit(world.training_data(), progress=False)
    epochs = scorer.models["shop"].info["epochs"]
    last = epochs[-1]["weights"]
    assert len({round(w, 2) for w in last.values()}) > 1, last
    # a trajectory: one set of weights per epoch, moving from epoch to epoch
    assert [set(e["weights"]) for e in epochs] == [set(last)] * len(epochs)
    assert epochs[0]["weights"] != last


def test_fixed_weights_stay_equal(world, encoder_dir):
    scorer = scorer_with(encoder_dir, task_weighting="fixed", epochs=2)
    scorer.fit(world.training_data(), progress=False)
    for epoch in scorer.models["shop"].info["epochs"]:
        assert set(epoch["weights"].values()) == {1.0}


def test_early_stopping_restores_the_best_epoch(world, encoder_dir, monkeypatch):
    """With a learning rate that overfits fast, the validation loss turns up; training stops
    ``patience`` epochs after the best one and the exported model is that epoch's."""
    scorer = scorer_with(encoder_dir, learning_rate=0.05, epochs=30, patience=2,
                         weight_decay=0.0, history_dropout=0.0)
    scorer.fit(world.training_data(), progress=False)
    info = scorer.models["shop"].info
    epochs = info["epochs"]
    assert info["best_epoch"] < len(epochs) < 30
    assert len(epochs) - info["best_epoch"] == 2
    best = epochs[info["best_epoch"] - 1]["val_loss"]
    assert info["validation_loss"] == pytest.approx(best, rel=1e-4)


def test_lora_trains_adapters_only_and_reembeds(world, encoder_dir):
    import torch
    from hybridrec_llm.encoder import Encoder

    encoder = Encoder(encoder_dir)
    base = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    texts = E.item_texts(world.data.items)[:8]
    before = encoder.encode(texts, progress=False)
    encoder.add_lora(r=4, alpha=8)
    trainable = {n for n, p in encoder.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    optimizer = torch.optim.Adam([p for p in encoder.model.parameters() if p.requires_grad],
                                 lr=0.05)
    encoder.model.train()
    for _ in range(3):
        loss = -encoder.forward(texts)[:, 0].sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = encoder.model.state_dict()
    changed = {n for n, v in state.items() if "lora_" not in n and not torch.equal(
        v, base[n.replace("base_model.model.", "").replace(".base_layer", "")])}
    assert not changed, f"non-adapter parameters changed: {sorted(changed)[:5]}"
    assert any(not torch.all(v == 0) for n, v in state.items() if "lora_B" in n)
    encoder.merge_lora()
    assert encoder.lora and "lora" in encoder.identity()
    after = encoder.encode(texts, progress=False)
    assert not np.allclose(before, after)


def test_lora_fit_reembeds_items_with_merged_weights(world, encoder_dir, tmp_path):
    scorer = scorer_with(encoder_dir, epochs=1, fine_tune="lora", lora_steps=4,
                         lora_batch=8, lora_learning_rate=0.05)
    scorer.fit(world.training_data(), progress=False)
    report = scorer.fit_info["lora"]
    assert report["trainable_params"] > 0
    assert scorer.encoder.lora and scorer.fit_info["encoder_id"].startswith("lora:")
    frozen = scorer_with(encoder_dir, epochs=1)
    frozen.fit(world.training_data(), progress=False)
    # the same seed and network: the items' representations differ by the re-embedding
    assert not np.allclose(scorer.models["shop"].net.a["item_reps"],
                           frozen.models["shop"].net.a["item_reps"])
    written = scorer.write_features(world.store, world.data.items.head(3), progress=False)
    assert written == {E.VIEW: 3}
    stored = E.read(Path(world.store.repo_path)).set_index(C.ITEM_ID)
    assert set(stored.loc[world.data.items[C.ITEM_ID].head(3), E.ENCODER]) == {
        scorer.fit_info["encoder_id"]}
    scorer.save(tmp_path)
    assert (tmp_path / "encoder" / "config.json").is_file()
    loaded = LlmScorer.load(tmp_path)
    assert loaded.encoder_dir == tmp_path / "encoder"


def test_distillation_reports_quality_and_time(world, encoder_dir):
    scorer = scorer_with(encoder_dir, epochs=2, distill=True, student_dim=8,
                         student_hidden=8, distill_epochs=2)
    scorer.fit(world.training_data(), progress=False)
    report = scorer.models["shop"].info["distillation"]
    assert set(report["validation_loss"]) == {"teacher", "student"}
    for model in ("teacher", "student"):
        losses = report["validation_loss"][model]
        assert set(losses) == set(scorer.models["shop"].info["tasks"])
        assert all(np.isfinite(v) and v > 0 for v in losses.values())
        assert report["ms_per_500_candidates"][model] > 0
    # the served network is the student
    assert scorer.models["shop"].net.dim == 8


def test_save_load_identical_scores(trained, world, tmp_path):
    trained.save(tmp_path)
    loaded = LlmScorer.load(tmp_path)
    scenario = world.data.scenarios["video"]
    user, _ = active_user(world.data, scenario)
    batch = world.batch(scenario, [(user, world.catalogue(scenario))])
    a, b = trained.score(batch), loaded.score(batch)
    assert a.keys() == b.keys()
    for task in a:
        np.testing.assert_array_equal(a[task], b[task])


def test_new_item_scored_from_its_text_embedding(trained, world):
    """An item the model never saw gets a finite score when its embedding is in the batch's
    item features, and NaN when it is not."""
    scenario = world.data.scenarios["shop"]
    user, _ = active_user(world.data, scenario)
    batch = world.batch(scenario, [(user, ["brand-new", world.catalogue(scenario)[0]])])
    assert np.isnan(trained.score(batch)["click"][0])
    encoder = trained.load_encoder()
    vector = encoder.encode(["wireless bluetooth headphones"], progress=False)[0]
    column = np.empty(2, dtype=object)
    column[:] = [vector.tolist(), None]
    encoders = np.array([trained.fit_info["encoder_id"], None], dtype=object)
    batch.item_features = {**batch.item_features, E.COLUMN: column, E.ENCODER_COLUMN: encoders}
    out = trained.score(batch)
    assert np.isfinite(out["click"]).all()
    # the same vector from another encoder is another space: no opinion
    encoders[0] = "some-other-encoder"
    assert np.isnan(trained.score(batch)["click"][0])


def test_embeddings_written_to_feast_read_back_equal(trained, world):
    store = world.store
    items = world.data.items[world.data.items[C.SCENARIO] == "shop"].head(5).copy()
    trained.write_features(store, items, progress=False)
    assert trained.write_features(store, items, progress=False) == {E.VIEW: 0}, \
        "unchanged texts are not re-embedded"
    items["title"] = items["title"] + " (new edition)"
    assert trained.write_features(store, items, progress=False) == {E.VIEW: 5}, \
        "changed texts are re-embedded"
    ids = items[C.ITEM_ID].tolist()
    online = store.get_online_features(features=[E.REF],
                                       entity_rows=[{C.ITEM_ID: i} for i in ids]).to_dict()
    stored = E.by_item(E.read(Path(store.repo_path)))
    encoder = trained.load_encoder()
    expected = encoder.encode(E.item_texts(items), progress=False)
    for i, got, want in zip(ids, online[E.EMBEDDING], expected, strict=True):
        np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stored[i], want, rtol=1e-5, atol=1e-6)


def test_scoring_imports_neither_torch_nor_transformers(trained, world, tmp_path):
    trained.save(tmp_path)
    code = f"""
import sys
from pathlib import Path
from hybridrec_llm import LlmScorer
from hybridrec.contracts import ScoreBatch
scorer = LlmScorer.load(Path({str(tmp_path)!r}))
model = scorer.models["shop"]
out = scorer.score(ScoreBatch.one(
    __import__("hybridrec.builtin.scenarios", fromlist=["SHOP"]).SHOP, "u1",
    model.item_ids[:5]))
assert all(len(v) == 5 for v in out.values())
print(sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_bad_config_is_refused_naming_the_problem():
    with pytest.raises(ValueError, match="task_weighting"):
        LlmScorer(task_weighting="magic")
    with pytest.raises(ValueError, match="fine_tune"):
        LlmScorer(fine_tune="full")
    with pytest.raises(ValueError, match="device"):
        LlmScorer(device="tpu")
    with pytest.raises(ValueError, match="train_tasks"):
        LlmScorer(train_tasks=["clicks"])
    with pytest.raises(FileNotFoundError, match="not a transformers model directory"):
        from hybridrec_llm.encoder import resolve

        resolve("/no/such/model")


def test_numpy_serving_computes_what_the_torch_network_computes():
    """ServingNet (what serves) against MultiTaskNet (what trained), on a random network with
    perturbed weights: users with and without history, warm and ID-less items, and an item
    represented by its text alone."""
    import torch
    from hybridrec_llm.net import MultiTaskNet, export
    from hybridrec_llm.serving import ServingNet

    from hybridrec.contracts import Ragged

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    n_items, text_dim = 30, 12
    text = np.vstack([np.zeros((1, text_dim)), rng.normal(size=(n_items, text_dim))])
    ids = np.r_[0, np.where(rng.random(n_items) < 0.6, np.arange(1, n_items + 1), 0)]
    net = MultiTaskNet(text.astype(np.float32), ids, n_items + 1, 7, 4, 3, dim=8, hidden=16)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        net.item_id.weight[0].zero_()  # the "no ID" row, which training keeps at zero
    net.eval()
    history = np.array([[0, 0, 3, 5], [1, 2, 3, 4], [0, 0, 0, 0]])  # 0 = padding
    targets = rng.integers(1, n_items + 1, size=(3, 6))
    codes = rng.integers(0, 7, size=(3, 2))
    numeric = rng.normal(size=(3, 4)).astype(np.float32)
    with torch.no_grad():
        out = net(torch.as_tensor(history), torch.as_tensor(targets), torch.as_tensor(codes),
                  torch.as_tensor(numeric))
    serving = ServingNet(export(net), (3.5, 1.2))
    users = serving.users(Ragged.from_rows([h[h > 0] for h in history], dtype=np.int64),
                          codes, numeric)
    got = serving.score(users, np.repeat(np.arange(3), 6), targets.ravel())
    np.testing.assert_allclose(got[:, 0], torch.sigmoid(out["click"]).numpy().ravel(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 1], torch.sigmoid(out["like"]).numpy().ravel(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[:, 2], out["rating"].numpy().ravel() * 1.2 + 3.5,
                               rtol=1e-5, atol=1e-5)
    # an item given by its text alone scores as its stored row would without an ID part
    rows = targets.ravel().copy()
    textless = ids[rows] == 0
    assert textless.any()
    by_text = serving.score(users, np.repeat(np.arange(3), 6), np.where(textless, 0, rows),
                            text[rows].astype(np.float32))
    np.testing.assert_allclose(by_text[textless], got[textless], rtol=1e-5, atol=1e-6)
    # one request at a time (serving's folded first layer) scores as the batch does
    request = np.repeat(np.arange(3), 6)
    for r in range(3):
        mine = request == r
        alone = serving.score(users[r:r + 1], np.zeros(mine.sum(), dtype=np.int64),
                              np.where(textless, 0, rows)[mine], text[rows][mine].astype(
                                  np.float32))
        np.testing.assert_allclose(alone, by_text[mine], rtol=1e-5, atol=1e-6)
