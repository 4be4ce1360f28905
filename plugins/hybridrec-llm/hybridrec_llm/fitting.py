"""``LlmScorer.fit``: encode, build examples, train per scenario, optionally fine-tune with
LoRA and distil, export to NumPy. Imports torch; the scorer module does not."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from hybridrec import columns as C
from hybridrec.contracts import TrainingData
from hybridrec_llm import embeddings as E
from hybridrec_llm import examples as X
from hybridrec_llm.serving import ServingNet, UserCodec

if TYPE_CHECKING:
    from hybridrec_llm.scorer import LlmScorer, ScenarioModel


def fit(scorer: LlmScorer, data: TrainingData, progress: bool = True
        ) -> tuple[dict[str, ScenarioModel], dict[str, Any], Any]:
    import torch

    from hybridrec_llm.device import choose_device, cpu_threads
    from hybridrec_llm.encoder import Encoder, embed, load, resolve
    from hybridrec_llm.net import MultiTaskNet, export
    from hybridrec_llm.scorer import ScenarioModel
    from hybridrec_llm.train import UserInputs, evaluate_losses, train

    config = scorer.config
    device = choose_device(config["device"])
    threads = cpu_threads(config["threads"])
    torch.set_num_threads(threads)
    torch.manual_seed(config["random_state"])
    path = resolve(config["encoder"])
    # LoRA changes the weights: it gets a fresh copy, never the shared one
    encoder = Encoder(path, device) if config["fine_tune"] == "lora" else load(path, device)
    info: dict[str, Any] = {"device": device, "threads": threads,
                            "encoder": str(encoder.path), "text_dim": encoder.dim}
    states: dict[str, dict[str, Any]] = {}
    encode_seconds, encoded = 0.0, 0
    for name, scenario in data.scenarios.items():
        if not scorer.supports(scenario):
            continue
        items = data.items[data.items[C.SCENARIO] == name]
        item_ids = items[C.ITEM_ID].to_numpy(str)
        pairs = X.pairs(data.scenario_events(name), scenario)
        if not len(item_ids) or not len(pairs.frame):
            continue
        texts = E.item_texts(items)
        start = time.perf_counter()
        vectors = embed(encoder, texts, E.text_hashes(texts, encoder.identity()), progress)
        encode_seconds += time.perf_counter() - start
        encoded += len(texts)
        frame = pairs.frame
        item_rows = {i: p + 1 for p, i in enumerate(item_ids)}
        users = np.unique(frame[C.USER_ID].to_numpy(str))
        user_pos = {u: p for p, u in enumerate(users)}
        ex = X.build(pairs, item_rows, user_pos, config["history_length"])
        later = X.latest_per_user(ex, config["validation_fraction"])
        train_pos, valid_pos = ex.take(np.flatnonzero(~later)), ex.take(np.flatnonzero(later))
        # everything learnt from the pairs comes from the training part only
        counts = np.bincount(train_pos.target, minlength=len(item_ids) + 1)
        warm_rows = np.flatnonzero(counts >= config["min_item_interactions"])
        warm_rows = warm_rows[warm_rows > 0]
        ids = np.zeros(len(item_ids) + 1, dtype=np.int64)
        ids[warm_rows] = np.arange(1, len(warm_rows) + 1)
        scale = X.rating_scale(train_pos)
        for part in (train_pos, valid_pos):
            X.standardise_ratings(part, scale)
        # histories from the training pairs only (in time order per user), for both parts
        order = np.lexsort((train_pos.time, train_pos.user))
        for part in (train_pos, valid_pos):
            X.histories(train_pos.user[order], train_pos.target[order], part,
                        config["history_length"])
        rng = np.random.default_rng(config["random_state"])
        valid_negs = X.negatives(len(valid_pos), len(item_ids), config["negatives"], rng)
        per_user = frame.drop_duplicates(C.USER_ID).set_index(C.USER_ID).reindex(users)
        codec = UserCodec.fit(per_user, scorer.user_columns)
        codes, numeric = codec.encode({c: per_user[c].to_numpy(object) for c in per_user
                                       if c in scorer.user_columns}, len(users))
        category = items["category"].astype(str).to_numpy() if "category" in items else \
            np.full(len(items), "")
        categories = sorted(set(category))
        profile = np.zeros((len(users), len(categories)), dtype=np.float32)
        cat_of = dict(zip(item_ids, np.searchsorted(categories, category), strict=True))
        item_category = np.r_[0, [cat_of[i] for i in item_ids]].astype(np.int64)
        np.add.at(profile, (train_pos.user, item_category[train_pos.target]), 1.0)
        user_inputs = UserInputs(codes, numeric, profile, item_category)
        tasks = _tasks(config["train_tasks"], pairs, len(categories))
        text = np.vstack([np.zeros((1, encoder.dim), np.float32), vectors])
        net = MultiTaskNet(text, ids, len(warm_rows) + 1, codec.n_codes, codec.n_numeric,
                           len(categories), config["dim"], config["hidden"],
                           config["id_dropout"]).to(device)
        result = train(net, train_pos, valid_pos, valid_negs, user_inputs, len(item_ids),
                       tasks, config, device, progress, name)
        states[name] = {
            "item_ids": item_ids, "texts": texts, "net": net, "codec": codec, "scale": scale,
            "tasks": tasks, "train": train_pos, "valid": valid_pos, "valid_negs": valid_negs,
            "users": user_inputs,
            "info": {"items": len(item_ids), "warm_items": len(warm_rows),
                     "users": len(users), "pairs": len(frame),
                     "train_examples": len(train_pos), "validation_examples": len(valid_pos),
                     "tasks": list(tasks), "task_weighting": config["task_weighting"],
                     "initial_validation_loss": {t: round(v, 5)
                                                 for t, v in result.initial.items()},
                     "epochs": result.epochs, "best_epoch": result.best_epoch,
                     "train_seconds": round(result.seconds, 2)}}
    info["encoded_items"] = encoded
    info["encode_items_per_second"] = round(encoded / encode_seconds, 1) if encode_seconds else None
    if config["fine_tune"] == "lora" and states:
        info["lora"] = _lora(encoder, states, config, device, progress)
    info["encoder_id"] = encoder.identity()  # after LoRA, the merged weights'
    models = {}
    for name, s in states.items():
        chosen = s["net"]
        if config["distill"]:
            chosen, s["info"]["distillation"] = _distill(s, config, device, progress)
        arrays = export(chosen.cpu())
        serving = ServingNet(arrays, s["scale"])
        tasks = tuple(t for t in s["tasks"] if t != "profile")
        model = ScenarioModel(s["item_ids"], serving, s["codec"], tasks, encoder.dim, s["info"])
        s["info"]["validation_loss"] = {
            t: round(v, 5) for t, v in evaluate_losses(
                chosen, s["valid"], s["valid_negs"], s["users"], s["tasks"], "cpu").items()}
        models[name] = model
    return models, info, encoder


def _tasks(requested: list[str] | None, pairs: X.Pairs, n_categories: int) -> tuple[str, ...]:
    available = ["click"]
    if pairs.has_like:
        available.append("like")
    if pairs.has_rating:
        available.append("rating")
    if n_categories > 1:
        available.append("profile")
    if requested:
        return tuple(t for t in available if t in requested)
    return tuple(available)


def _lora(encoder: Any, states: dict[str, dict[str, Any]], config: dict[str, Any],
          device: str, progress: bool) -> dict[str, Any]:
    """LoRA on the encoder through every scenario's examples, merged, then every item
    re-embedded with the merged weights."""
    from hybridrec_llm.encoder import embed
    from hybridrec_llm.train import lora_train

    report = {}
    for name, s in states.items():
        report[name] = lora_train(s["net"], encoder, s["texts"], s["train"], s["users"],
                                  len(s["item_ids"]), s["tasks"], config, device, progress)
        encoder.model.eval()
    trainable = report[next(iter(report))]["trainable_params"]
    encoder.merge_lora()
    import torch

    for s in states.values():
        texts = s["texts"]
        vectors = embed(encoder, texts, E.text_hashes(texts, encoder.identity()), progress)
        s["net"].text[1:] = torch.as_tensor(vectors, device=s["net"].text.device)
    return {"trainable_params": trainable, "scenarios": report}


def _distill(s: dict[str, Any], config: dict[str, Any], device: str, progress: bool
             ) -> tuple[Any, dict[str, Any]]:
    """A smaller student trained on the teacher's outputs; its quality and serving time
    next to the teacher's."""
    from hybridrec_llm.net import MultiTaskNet, export
    from hybridrec_llm.scorer import ScenarioModel, timed_score
    from hybridrec_llm.train import distill, evaluate_losses

    teacher = s["net"]
    student = MultiTaskNet(teacher.text.cpu().numpy(), teacher.ids.cpu().numpy(),
                           teacher.item_id.num_embeddings, teacher.user_code.num_embeddings,
                           teacher.user_numeric.in_features, teacher.profile.out_features,
                           config["student_dim"], config["student_hidden"]).to(device)
    distill(teacher, student, s["train"], s["users"], len(s["item_ids"]), config, device,
            progress)
    losses = {}
    millis = {}
    for label, net in (("teacher", teacher), ("student", student)):
        losses[label] = {t: round(v, 5) for t, v in evaluate_losses(
            net, s["valid"], s["valid_negs"], s["users"], s["tasks"], device).items()}
        model = ScenarioModel(s["item_ids"], ServingNet(export(net.cpu()), s["scale"]),
                              s["codec"], tuple(s["tasks"]), net.text.shape[1])
        millis[label] = round(timed_score(model) * 1000, 4)
        net.to(device)
    return student, {"validation_loss": losses, "ms_per_500_candidates": millis,
                     "student": {"dim": config["student_dim"],
                                 "hidden": config["student_hidden"]}}

