"""Off-policy evaluation from the server's own logs (``hybridrec evaluate --ope``).

Every served list is logged with its decision (``hybridrec.feedback``): the arm drawn, every
arm's probability, the list each arm would have shown, and, per shown position, the
probability that the item shown there would have been there. A *candidate policy* is a
mixture of those arms, written as a specification:

* ``logged``: the logging policy itself (a check: IPS and SNIPS give the observed value);
* ``greedy``: per request, the arm the logging policy favoured most (no exploration);
* an arm's name, ``offline`` (the bundle's offline weights) or ``toward:als.click``;
* a mixture, ``offline=0.8,toward:als.click=0.2`` (weights are normalised);
* ``bundle:VERSION`` (or ``bundle:current``): a newly trained bundle's own blend, ranking
  each logged request's items before it serves (``bundle_ranker``).

For each logged request and shown position, the candidate's probability of showing that
item there is the sum of its arms' probabilities over the arms whose list has it there; the
reward of a position is the objective gain (``Scenario.gains``, at most 1) of the best
feedback event on its item in that request. The estimators of ``hybridrec.ope`` turn these
rows into the candidate's value per shown position, with intervals over requests. The
direct method (and with it doubly robust) needs a reward model: the calibrated probability
a scorer logged for each listed item (the ``ctr`` scorer's, in an ad slot); scenarios
without one get IPS and SNIPS only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec.contracts import FIXED_ARM, Scenario
from hybridrec.ope import ESTIMATORS, NEEDS_MODEL, Estimate, LoggedFeedback, estimate
from hybridrec.ope import effective_sample_size as ess

LOGGED, GREEDY, BUNDLE = "logged", "greedy", "bundle:"


class PolicyError(ValueError):
    """A candidate policy specification that cannot be read."""


def parse_policy(spec: str) -> dict[str, float]:
    """``{arm: weight}`` (normalised) of a mixture, or ``{spec: 1}`` for a single name."""
    spec = spec.strip()
    if not spec:
        raise PolicyError("a candidate policy is a name ('logged', 'greedy', an arm) or a "
                          "mixture 'ARM=WEIGHT,...'")
    if "=" not in spec:
        return {spec: 1.0}
    mixture: dict[str, float] = {}
    for part in spec.split(","):
        arm, _, weight = part.partition("=")
        try:
            value = float(weight)
        except ValueError:
            raise PolicyError(f"policy {spec!r}: weight {weight!r} of {arm.strip()!r} is "
                              "not a number") from None
        if not arm.strip() or value < 0 or not np.isfinite(value):
            raise PolicyError(f"policy {spec!r}: each part is ARM=WEIGHT with a weight >= 0")
        mixture[arm.strip()] = mixture.get(arm.strip(), 0.0) + value
    total = sum(mixture.values())
    if total <= 0:
        raise PolicyError(f"policy {spec!r}: the weights add up to 0")
    return {arm: w / total for arm, w in mixture.items()}


#: What a candidate would show for one logged request: (probability, items) per list.
Lists = list[tuple[float, list[str]]]
#: A candidate that ranks a logged request itself (a bundle): its list, or None to skip.
Ranker = Callable[[Mapping[str, Any]], "list[str] | None"]


def _arm_lists(mixture: Mapping[str, float], decision: Mapping[str, Any]) -> Lists | None:
    """The lists a mixture of arms would show for ``decision``'s request; None where the
    decision does not have every arm the mixture names."""
    logged, lists = decision["probabilities"], decision["lists"]
    if set(mixture) == {LOGGED} or set(logged) == {FIXED_ARM}:
        # the logging policy; or a list nothing chose among ways of blending (a cold
        # start's fallback), which a candidate over the blend's arms serves alike
        return [(p, lists[a]) for a, p in logged.items() if p > 0]
    if set(mixture) == {GREEDY}:
        return [(1.0, lists[max(logged, key=logged.get)])]
    if not set(mixture) <= set(lists):
        return None
    return [(p, lists[a]) for a, p in mixture.items()]


@dataclass
class Rows:
    """The logged rows of one scenario for one candidate, before estimation."""

    reward: list[float] = field(default_factory=list)
    pscore: list[float] = field(default_factory=list)
    target: list[float] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    dm_logged: list[float] = field(default_factory=list)
    dm_target: list[float] = field(default_factory=list)
    requests: int = 0
    skipped: int = 0
    #: The candidate's probability of showing, at a position, an item the logging policy
    #: could not have shown there: the part of its value no estimator here sees.
    unsupported: float = 0.0

    def add(self, entry: Mapping[str, Any], candidate: Lists,
            gains: Mapping[str, float]) -> None:
        decision, shown = entry["decision"], entry["items"]
        best: dict[str, float] = {}
        for item, kind in entry["feedback"]:
            best[item] = max(best.get(item, 0.0), min(1.0, gains.get(kind, 0.0)))
        estimates = decision.get("estimates") or {}
        modelled = bool(estimates) and all(i in estimates for i in shown)
        group = self.requests
        self.requests += 1
        logging = [(q, lst) for a, lst in decision["lists"].items()
                   if (q := decision["probabilities"].get(a, 0.0)) > 0]
        for j, item in enumerate(shown):
            self.reward.append(best.get(item, 0.0))
            self.pscore.append(min(1.0, max(float(decision["positions"][j]), 1e-6)))
            there = [(p, lst[j] if j < len(lst) else None) for p, lst in candidate]
            self.target.append(min(1.0, sum(p for p, other in there if other == item)))
            could = {lst[j] for _, lst in logging if j < len(lst)}
            self.unsupported += sum(p for p, other in there if other not in could)
            self.groups.append(group)
            if modelled:
                self.dm_logged.append(estimates[item])
                self.dm_target.append(sum(p * estimates.get(other or "", 0.0)
                                          for p, other in there))

    def feedback(self) -> LoggedFeedback:
        with_model = len(self.dm_logged) == len(self.reward)
        return LoggedFeedback(self.reward, self.pscore, self.target, self.groups,
                              self.dm_logged if with_model else None,
                              self.dm_target if with_model else None)


def evaluate_logs(decisions: Sequence[Mapping[str, Any]], scenarios: Mapping[str, Scenario],
                  policies: Sequence[str], n_boot: int = 1000, seed: int = 0,
                  bundle_version: str | None = None,
                  rankers: Mapping[str, Ranker] | None = None) -> dict[str, dict[str, Any]]:
    """``{scenario: {policy: result}}`` over the logged ``decisions`` (``FeedbackLog.
    decisions``; those of ``bundle_version`` only, when given: an arm such as ``offline``
    means another ranking in each bundle); a result has ``requests``, ``slots``,
    ``skipped`` (requests whose decision lacks an arm the policy names), ``unsupported``
    (the share of the policy's probability on items the logging policy could not have
    shown where they would be: a value no estimator here sees), ``logged_value`` (mean
    reward per shown position), ``estimates`` (``{estimator: Estimate}``) and ``ess``.
    ``rankers`` rank a logged request themselves (``bundle:VERSION``), deterministically."""
    rankers = dict(rankers or {})
    mixtures = {spec: parse_policy(spec) for spec in policies if spec not in rankers}
    out: dict[str, dict[str, Any]] = {}
    for name, scenario in scenarios.items():
        entries = [e for e in decisions if e["scenario"] == name and e["decision"]
                   and e["decision"].get("lists") and e["items"]
                   and (bundle_version is None or e["bundle_version"] == bundle_version)]
        if not entries:
            continue
        gains = scenario.gains
        out[name] = {}
        for spec in policies:
            rows, chosen = Rows(), 0
            for entry in entries:
                candidate = (_ranked(rankers[spec], entry) if spec in rankers
                             else _arm_lists(mixtures[spec], entry["decision"]))
                if candidate is None:
                    rows.skipped += 1
                    continue
                rows.add(entry, candidate, gains)
                chosen += set(entry["decision"]["probabilities"]) != {FIXED_ARM}
            if not chosen and spec not in rankers and spec != LOGGED:
                rows = Rows(skipped=len(entries))  # only lists nothing chose: no evidence
            out[name][spec] = _result(rows, n_boot, seed)
    return out


def _ranked(ranker: Ranker, entry: Mapping[str, Any]) -> Lists | None:
    ranked = ranker(entry)
    return None if ranked is None else [(1.0, ranked)]


def bundle_ranker(recommender: Any) -> Ranker:
    """A candidate bundle as a ranker: for each logged request, the bundle's own blend
    (offline, no exploration) over the items any arm could have shown, as of now (its
    training data; features read now). Items no arm could have shown are left out: no log
    says anything of them. Requests of a scenario it does not serve are skipped."""
    def rank(entry: Mapping[str, Any]) -> list[str] | None:
        if entry["scenario"] not in recommender.scenarios:
            return None
        lists = entry["decision"]["lists"]
        pool = list(dict.fromkeys(item for items in lists.values() for item in items))
        answer = recommender.recommend(entry["user_id"], entry["scenario"],
                                       k=max(1, len(entry["items"])), candidates=pool,
                                       exclude_seen=False)
        return [item.item_id for item in answer.items]
    return rank


def _result(rows: Rows, n_boot: int, seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {"requests": rows.requests, "slots": len(rows.reward),
                              "skipped": rows.skipped,
                              "unsupported": rows.unsupported / max(len(rows.reward), 1)}
    if not rows.reward:
        return {**result, "logged_value": None, "estimates": {}, "ess": 0.0}
    data = rows.feedback()
    names = [e for e in ESTIMATORS if data.has_model or e not in NEEDS_MODEL]
    estimates: dict[str, Estimate] = estimate(data, names, n_boot=n_boot, seed=seed)
    return {**result, "logged_value": float(np.mean(rows.reward)), "estimates": estimates,
            "ess": ess(data)}


def table(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The results as a Markdown table."""
    lines = ["| scenario | policy | requests | logged value | estimator | value [95 % interval] "
             "| ESS | unsupported |", "|---|---|---|---|---|---|---|---|"]
    for scenario, per in results.items():
        for spec, result in per.items():
            logged = result["logged_value"]
            shown = "-" if logged is None else f"{logged:.4f}"
            if not result["estimates"]:
                lines.append(f"| {scenario} | {spec} | {result['requests']} | {shown} | - | "
                             f"no request has this policy's arms | - | - |")
            for name, e in result["estimates"].items():
                lines.append(f"| {scenario} | {spec} | {result['requests']} | {shown} | "
                             f"{name.upper()} | {e.value:.4f} [{e.lo:.4f}, {e.hi:.4f}] | "
                             f"{result['ess']:.0f} | {result['unsupported']:.1%} |")
    return "\n".join(lines)
