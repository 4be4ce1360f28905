"""The multi-task network (torch, training only) and the task weightings.

Item representation: a projection of the item's text embedding plus a learned ID embedding
for items with enough interactions (ID 0, all zeros, for the rest, so new items fall back to
text). User representation: attention pooling over the representations of the user's recent
items, queried by the user's features, combined with those features. Shared layers over
``[user, item, user * item]``, then one linear head per candidate task (click, like, rating);
the user-profile head (multi-label category affinity) reads the user representation alone.

Task weightings: ``fixed`` (equal weights), ``uncertainty`` (homoscedastic uncertainty,
Kendall et al. 2018: each task's loss scaled by a learned precision ``exp(-s)``, plus ``s``)
and ``gradnorm`` (Chen et al. 2018: weights moved so each task's gradient norm at the last
shared layer tracks its relative training rate).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hybridrec_llm.serving import ITEM_TASKS, WEIGHTINGS

#: Uncertainty weighting keeps each log-variance within +-this (weights within e^+-3), so a
#: task whose loss nears zero cannot take over the gradient.
LOG_VAR_LIMIT = 3.0


class MultiTaskNet(nn.Module):
    def __init__(self, text: np.ndarray, item_ids: np.ndarray, n_ids: int, n_user_codes: int,
                 n_user_numeric: int, n_categories: int, dim: int = 64, hidden: int = 128,
                 id_dropout: float = 0.0) -> None:
        super().__init__()
        # Row 0 of every item table is padding (no item).
        self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32))
        self.register_buffer("ids", torch.as_tensor(item_ids, dtype=torch.long))
        self.text_proj = nn.Linear(text.shape[1], dim)
        self.item_id = nn.Embedding(n_ids, dim, padding_idx=0)
        nn.init.normal_(self.item_id.weight, std=0.01)
        with torch.no_grad():
            self.item_id.weight[0].zero_()
        self.user_code = nn.Embedding(max(n_user_codes, 1), dim)
        nn.init.normal_(self.user_code.weight, std=0.05)
        self.user_numeric = nn.Linear(max(n_user_numeric, 1), dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.user_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.trunk = nn.Sequential(nn.Linear(3 * dim, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.Linear(hidden, len(ITEM_TASKS))
        # Each head also reads the user-item dot product (scaled per task): an MLP learns a
        # dot product poorly, and it carries the collaborative signal.
        self.dot_scale = nn.Parameter(torch.ones(len(ITEM_TASKS)))
        self.profile = nn.Linear(dim, max(n_categories, 1))
        self.dim = dim
        # the share of items trained without their ID embedding, as new items are served
        self.id_dropout = id_dropout

    @property
    def shared(self) -> nn.Parameter:
        """The last layer every task passes through (GradNorm measures gradients here)."""
        return self.user_mlp[-1].weight

    def item_reps(self, rows: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Representations of item-table rows; ``text`` replaces their text embeddings (the
        LoRA stage computes them with gradients)."""
        t = self.text[rows] if text is None else text
        return self.text_proj(t) + self.item_id(self.ids[rows])

    def drop_ids(self, targets: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """In training, a share (``id_dropout``) of the target items lose their ID embedding,
        so the model also learns to rank items by their text alone, as new items are served.
        History items keep theirs: a user is still described by everything known of them."""
        if not self.training or self.id_dropout <= 0:
            return item
        drop = torch.rand(targets.shape, device=targets.device) < self.id_dropout
        return item - drop.unsqueeze(-1) * self.item_id(self.ids[targets])

    def user_reps(self, history: torch.Tensor, hist_reps: torch.Tensor,
                  hist_keys: torch.Tensor, codes: torch.Tensor, numeric: torch.Tensor
                  ) -> torch.Tensor:
        """Attention pooling of the history's representations (keys ``hist_keys``), queried
        by the user's features, then combined with them."""
        features = self.user_code(codes).sum(1) + self.user_numeric(numeric)
        q = self.query(features)
        logits = (hist_keys @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(self.dim)
        present = history > 0
        logits = logits.masked_fill(~present, -1e9)
        attn = torch.softmax(logits, dim=-1) * present  # all-padding rows pool to zero
        pooled = (attn.unsqueeze(-1) * hist_reps).sum(1)
        return self.user_mlp(torch.cat([pooled, features], dim=-1))

    def forward(self, history: torch.Tensor, targets: torch.Tensor, codes: torch.Tensor,
                numeric: torch.Tensor, target_text: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Head outputs for ``targets`` (B, T): each request's positive and its sampled
        negatives share one user representation. ``target_text`` (B, T, D) replaces the
        targets' stored text embeddings (the LoRA stage computes them with gradients).

        Item representations and attention keys are computed once per distinct item, and
        the first shared layer's user part once per user: the arithmetic of
        ``trunk(cat([u, i, u * i]))``, without repeating it per history item or target."""
        wanted = torch.cat([history.reshape(-1), targets.reshape(-1)])
        if len(wanted) >= self.text.shape[0]:  # every item once is cheaper than a unique()
            rows = torch.arange(self.text.shape[0], device=wanted.device)
            hist_at, target_at = history, targets
        else:
            rows, inverse = torch.unique(wanted, return_inverse=True)
            hist_at = inverse[:history.numel()].reshape(history.shape)
            target_at = inverse[history.numel():].reshape(targets.shape)
        reps = self.item_reps(rows)
        user = self.user_reps(history, reps[hist_at], self.key(reps)[hist_at], codes, numeric)
        item = reps[target_at] if target_text is None else self.item_reps(targets, target_text)
        item = self.drop_ids(targets, item)
        d, first = self.dim, self.trunk[0]
        w = first.weight
        u_part = nn.functional.linear(user, w[:, :d], first.bias).unsqueeze(1)
        u = user.unsqueeze(1)
        h = torch.relu(u_part + nn.functional.linear(item, w[:, d:2 * d])
                       + nn.functional.linear(u * item, w[:, 2 * d:]))
        h = self.trunk[3](self.trunk[2](h))
        out = self.heads(h) + (u * item).sum(-1, keepdim=True) * self.dot_scale
        result = {task: out[..., i] for i, task in enumerate(ITEM_TASKS)}
        result["profile"] = self.profile(user)
        return result


def task_losses(out: dict[str, torch.Tensor], labels: dict[str, torch.Tensor],
                masks: dict[str, torch.Tensor], tasks: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per task, the mean loss over the entries that carry its label; tasks with no labelled
    entry in the batch are left out (masked, never fed zeros). Item tasks are (B, T): column
    0 the positive, the rest its sampled negatives. ``click`` adds to its pointwise loss a
    sampled-softmax term (the positive against its negatives), which is what ranks."""
    f = nn.functional
    losses = {}
    for task in tasks:
        mask = masks[task]
        if not bool(mask.any()):
            continue
        if task == "rating":
            losses[task] = f.mse_loss(out[task][mask], labels[task][mask])
        else:
            losses[task] = f.binary_cross_entropy_with_logits(out[task][mask],
                                                              labels[task][mask])
        if task == "click" and out[task].dim() == 2 and out[task].shape[1] > 1:
            listwise = f.cross_entropy(out[task], torch.zeros(
                len(out[task]), dtype=torch.long, device=out[task].device))
            losses[task] = losses[task] + listwise
    return losses


class TaskWeighting(nn.Module):
    """Combines per-task losses into one; ``weights()`` reports the current weights."""

    def __init__(self, kind: str, tasks: Sequence[str], alpha: float = 1.5) -> None:
        super().__init__()
        if kind not in WEIGHTINGS:
            raise ValueError(f"task_weighting must be one of {', '.join(WEIGHTINGS)}, "
                             f"got {kind!r}")
        self.kind, self.tasks, self.alpha = kind, list(tasks), alpha
        n = len(self.tasks)
        self.log_vars = nn.Parameter(torch.zeros(n))  # uncertainty: s = log sigma^2
        self.w = nn.Parameter(torch.ones(n))  # gradnorm
        self.initial: torch.Tensor | None = None

    def index(self, task: str) -> int:
        return self.tasks.index(task)

    def combine(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for task, loss in losses.items():
            i = self.index(task)
            if self.kind == "uncertainty":
                s = self.log_vars[i].clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT)
                total = total + torch.exp(-s) * loss + s
            elif self.kind == "gradnorm":
                total = total + self.w[i].detach() * loss
            else:
                total = total + loss
        return total

    def gradnorm_step(self, losses: dict[str, torch.Tensor], shared: nn.Parameter,
                      optimizer: torch.optim.Optimizer) -> None:
        """One GradNorm update of the weights (before the model's backward pass)."""
        tasks = list(losses)
        current = torch.stack([losses[t].detach() for t in tasks])
        idx = torch.tensor([self.index(t) for t in tasks], device=current.device)
        if self.initial is None:
            self.initial = torch.full((len(self.tasks),), float("nan"), device=current.device)
        fresh = torch.isnan(self.initial[idx])
        self.initial[idx[fresh]] = current[fresh].clamp(min=1e-8)
        norms = torch.stack([
            torch.autograd.grad(self.w[self.index(t)] * losses[t], shared, retain_graph=True,
                                create_graph=True)[0].norm() for t in tasks])
        ratio = current / self.initial[idx]
        rate = ratio / ratio.mean()
        target = (norms.mean() * rate ** self.alpha).detach()
        optimizer.zero_grad(set_to_none=True)
        gradnorm_loss = (norms - target).abs().sum()
        (grad,) = torch.autograd.grad(gradnorm_loss, self.w, retain_graph=True)
        with torch.no_grad():
            self.w -= optimizer.param_groups[0]["lr"] * 10 * grad
            self.w.clamp_(min=0.05)
            self.w *= len(self.tasks) / self.w.sum()

    def weights(self) -> dict[str, float]:
        with torch.no_grad():
            if self.kind == "uncertainty":
                values = torch.exp(-self.log_vars.clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT))
            elif self.kind == "gradnorm":
                values = self.w
            else:
                values = torch.ones(len(self.tasks))
        return {t: round(float(v), 4) for t, v in zip(self.tasks, values.detach(), strict=True)}


def export(net: MultiTaskNet) -> dict[str, np.ndarray]:
    """The network's weights as NumPy arrays, for ``serving.ServingNet``."""
    def a(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float32)

    with torch.no_grad():
        rows = torch.arange(net.text.shape[0])
        reps = net.item_reps(rows)
    trunk1, trunk2 = net.trunk[0], net.trunk[2]
    d = net.dim
    return {
        "item_reps": a(reps),
        "text_w": a(net.text_proj.weight.T), "text_b": a(net.text_proj.bias),
        "user_code": a(net.user_code.weight),
        "user_num_w": a(net.user_numeric.weight.T), "user_num_b": a(net.user_numeric.bias),
        "query_w": a(net.query.weight.T), "query_b": a(net.query.bias),
        "key_w": a(net.key.weight.T), "key_b": a(net.key.bias),
        "user1_w": a(net.user_mlp[0].weight.T), "user1_b": a(net.user_mlp[0].bias),
        "user2_w": a(net.user_mlp[2].weight.T), "user2_b": a(net.user_mlp[2].bias),
        "trunk1_u": a(trunk1.weight[:, :d].T), "trunk1_i": a(trunk1.weight[:, d:2 * d].T),
        "trunk1_ui": a(trunk1.weight[:, 2 * d:].T), "trunk1_b": a(trunk1.bias),
        "trunk2_w": a(trunk2.weight.T), "trunk2_b": a(trunk2.bias),
        "heads_w": a(net.heads.weight.T), "heads_b": a(net.heads.bias),
        "dot_scale": a(net.dot_scale),
    }
