"""The training loop (torch): joint multi-task training with adaptive task weights, early
stopping on a time-later validation slice with the best epoch restored, LoRA fine-tuning of
the encoder, and distillation into a smaller student.

A batch is a set of positives, each with its ``negatives`` sampled items: the user tower runs
once per positive, the item side and the heads once per (positive or negative) target.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hybridrec.progress import progress_bar
from hybridrec_llm.examples import Examples, negatives, targets_and_labels
from hybridrec_llm.net import ITEM_TASKS, MultiTaskNet, TaskWeighting, task_losses


@dataclass
class UserInputs:
    codes: np.ndarray  # (users, categorical)
    numeric: np.ndarray  # (users, numeric)
    profile: np.ndarray  # (users, categories) how many of the user's items fall in each
    category: np.ndarray | None = None  # (item rows,) each item's category column


@dataclass
class Tensors:
    """A batch's inputs and labels as tensors."""

    history: torch.Tensor
    targets: torch.Tensor
    codes: torch.Tensor
    numeric: torch.Tensor
    labels: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]


def tensors(ex: Examples, negs: np.ndarray, users: UserInputs, device: str,
            history: np.ndarray | None = None) -> Tensors:
    def t(x: np.ndarray, dtype: Any) -> torch.Tensor:
        return torch.as_tensor(x, dtype=dtype, device=device)

    history = trim(ex.history if history is None else history)
    targets, labels, masks = targets_and_labels(ex, negs)
    out_labels = {k: t(v, torch.float32) for k, v in labels.items()}
    out_masks = {k: t(v, torch.bool) for k, v in masks.items()}
    # profile: the categories of the user's items outside this example's history, so the
    # task is predicting taste, not reading it back from the input
    counts = users.profile[ex.user]
    if users.category is not None and history.size:
        n_cat = counts.shape[1]
        rows, cols = np.nonzero(history)
        cells = rows * n_cat + users.category[history[rows, cols]]
        counts = counts - np.bincount(cells, minlength=counts.size).reshape(counts.shape)
    profile = (counts > 0).astype(np.float32)
    out_labels["profile"] = t(profile, torch.float32)
    out_masks["profile"] = t(np.repeat(profile.any(1)[:, None], profile.shape[1], 1),
                             torch.bool)
    return Tensors(t(history, torch.long), t(targets, torch.long),
                   t(users.codes[ex.user], torch.long), t(users.numeric[ex.user], torch.float32),
                   out_labels, out_masks)


def trim(history: np.ndarray) -> np.ndarray:
    """``history`` without its leading all-padding columns (histories are left-padded):
    padding adds nothing to a user's representation, only arithmetic."""
    if history.shape[1] <= 1:
        return history
    used = (history != 0).any(0)
    return history[:, min(int(used.argmax()) if used.any() else history.shape[1] - 1,
                          history.shape[1] - 1):]


@dataclass
class Fit:
    net: MultiTaskNet
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    initial: dict[str, float] = field(default_factory=dict)  # validation loss untrained


def evaluate_losses(net: MultiTaskNet, data: Examples, negs: np.ndarray, users: UserInputs,
                    tasks: Sequence[str], device: str, batch_size: int = 2048
                    ) -> dict[str, float]:
    """Mean unweighted validation loss per task (over the entries carrying its label)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    net.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            rows = np.arange(start, min(start + batch_size, len(data)))
            b = tensors(data.take(rows), negs[rows], users, device)
            out = net(b.history, b.targets, b.codes, b.numeric)
            for task, loss in task_losses(out, b.labels, b.masks, tasks).items():
                n = int(b.masks[task].sum())
                sums[task] = sums.get(task, 0.0) + loss.item() * n
                counts[task] = counts.get(task, 0) + n
    return {t: sums[t] / counts[t] for t in sums}


def train(net: MultiTaskNet, positives: Examples, valid: Examples, valid_negs: np.ndarray,
          users: UserInputs, n_items: int, tasks: Sequence[str], config: dict[str, Any],
          device: str, progress: bool = True, label: str = "") -> Fit:
    """Train jointly; stop when the validation loss (each candidate task's loss relative to
    its untrained value, summed) has not improved for ``patience`` epochs, and restore the
    best epoch."""
    rng = np.random.default_rng(config["random_state"])
    weighting = TaskWeighting(config["task_weighting"], tasks).to(device)
    groups: list[dict[str, Any]] = [{"params": list(net.parameters())}]
    if weighting.kind == "uncertainty":  # the log-variances learn faster, without decay
        groups.append({"params": [weighting.log_vars], "lr": 10 * config["learning_rate"],
                       "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config["learning_rate"],
                                  weight_decay=config["weight_decay"])
    fit = Fit(net)

    def validation() -> dict[str, float]:
        return evaluate_losses(net, valid, valid_negs, users, tasks, device) if len(valid) \
            else {}

    fit.initial = validation()
    start = time.perf_counter()
    best, best_state, waited = np.inf, None, 0
    batch = config["batch_size"]
    for epoch in progress_bar(range(1, config["epochs"] + 1), f"training {label}".strip(),
                              enabled=progress):
        negs = negatives(len(positives), n_items, config["negatives"], rng)
        order = rng.permutation(len(positives))
        net.train()
        sums: dict[str, float] = {}
        steps = 0
        for s in range(0, len(order), batch):
            rows = order[s:s + batch]
            part = positives.take(rows)
            history = part.history
            if config["history_dropout"] > 0:  # hide some history: learn tastes, not sets
                history = np.where(rng.random(history.shape) < config["history_dropout"],
                                   0, history)
            b = tensors(part, negs[rows], users, device, history)
            out = net(b.history, b.targets, b.codes, b.numeric)
            losses = task_losses(out, b.labels, b.masks, tasks)
            if not losses:
                continue
            if weighting.kind == "gradnorm":
                weighting.gradnorm_step(losses, net.shared, optimizer)
            optimizer.zero_grad(set_to_none=True)
            weighting.combine(losses).backward()
            optimizer.step()
            for task, loss in losses.items():
                sums[task] = sums.get(task, 0.0) + loss.item()
            steps += 1
        val = validation()
        # the candidate tasks decide; the user-profile task is auxiliary
        score = (sum(v / max(fit.initial[t], 1e-8) for t, v in val.items()
                     if t in fit.initial and t in ITEM_TASKS) if val else -epoch)
        fit.epochs.append({"epoch": epoch,
                           "train_loss": {t: round(v / max(steps, 1), 5) for t, v in sums.items()},
                           "val_loss": {t: round(v, 5) for t, v in val.items()},
                           "weights": weighting.weights()})
        if score < best - 1e-6:
            best, best_state, waited = score, copy.deepcopy(net.state_dict()), 0
            fit.best_epoch = epoch
        else:
            waited += 1
            if waited >= config["patience"]:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    fit.seconds = time.perf_counter() - start
    return fit


def lora_train(net: MultiTaskNet, encoder: Any, texts: list[str], positives: Examples,
               users: UserInputs, n_items: int, tasks: Sequence[str], config: dict[str, Any],
               device: str, progress: bool = True) -> dict[str, Any]:
    """Fine-tune LoRA adapters on the encoder (and the network) through the target items'
    text: their embeddings are computed by the adapted encoder with gradients, one sampled
    negative per positive. ``texts[row - 1]`` is the text of item-table row ``row``."""
    encoder.add_lora(r=config["lora_r"], alpha=2 * config["lora_r"])
    encoder.model.train()
    trainable = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": trainable, "lr": config["lora_learning_rate"]},
                                  {"params": net.parameters(),
                                   "lr": config["learning_rate"] / 10}])
    rng = np.random.default_rng(config["random_state"] + 1)
    net.train()
    seen = []
    for _ in progress_bar(range(config["lora_steps"]), "LoRA fine-tuning", enabled=progress):
        rows = rng.integers(0, len(positives), size=config["lora_batch"])
        part = positives.take(rows)
        b = tensors(part, negatives(len(part), n_items, 1, rng), users, device)
        flat = b.targets.reshape(-1).tolist()
        text = encoder.forward([texts[r - 1] for r in flat]).reshape(*b.targets.shape, -1)
        out = net(b.history, b.targets, b.codes, b.numeric, target_text=text)
        loss = sum(task_losses(out, b.labels, b.masks, tasks).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen.append(loss.item())
    return {"trainable_params": int(sum(p.numel() for p in trainable)),
            "steps": config["lora_steps"],
            "loss_first": round(float(np.mean(seen[:10])), 5) if seen else None,
            "loss_last": round(float(np.mean(seen[-10:])), 5) if seen else None}


def distill(teacher: MultiTaskNet, student: MultiTaskNet, positives: Examples,
            users: UserInputs, n_items: int, config: dict[str, Any], device: str,
            progress: bool = True) -> None:
    """Train ``student`` to reproduce the teacher's outputs (logits, standardised rating,
    profile logits) on the training positives and freshly sampled negatives."""
    rng = np.random.default_rng(config["random_state"] + 2)
    optimizer = torch.optim.Adam(student.parameters(), lr=config["learning_rate"])
    teacher.eval()
    batch = config["batch_size"]
    mse = torch.nn.functional.mse_loss
    for _ in progress_bar(range(config["distill_epochs"]), "distilling", enabled=progress):
        negs = negatives(len(positives), n_items, config["negatives"], rng)
        order = rng.permutation(len(positives))
        student.train()
        for s in range(0, len(order), batch):
            rows = order[s:s + batch]
            b = tensors(positives.take(rows), negs[rows], users, device)
            with torch.no_grad():
                target = teacher(b.history, b.targets, b.codes, b.numeric)
            out = student(b.history, b.targets, b.codes, b.numeric)
            loss = sum(mse(out[t], target[t]) for t in (*ITEM_TASKS, "profile"))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
