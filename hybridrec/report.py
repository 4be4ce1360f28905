"""The evaluation report: ``index.html`` and its PNG plots (matplotlib), in one folder.

For every scenario: each ranker alone and the blend on the scenario's objective with 95 %
bootstrap intervals (``overview.png``, the main plot, all scenarios side by side); the same
per user-activity bucket; what the blender relied on (its share of absolute contributions per
input and bucket); calibration curves of probability outputs; and the tables behind them.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hybridrec.evaluation import BLEND, Evaluation
from hybridrec.objectives import BUCKETS

BLEND_COLOUR, OTHER_COLOUR = "#d62728", "#1f77b4"
BUCKET_COLOURS = {"cold": "#9ecae1", "light": "#4292c6", "heavy": "#08519c"}


def write_report(folder: Path, result: Any, k: int, title: str = "hybridrec evaluation"
                 ) -> Path:
    """Write ``folder/index.html`` and its plots for ``result`` (an ``Evaluation``, or a
    training result holding one); return the page's path."""
    import matplotlib

    matplotlib.use("Agg")
    evaluation: Evaluation = getattr(result, "evaluation", None) or result
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    objective = f"objective@{k}"
    scenarios = [s for s in evaluation.metrics if any(objective in row for row in
                                                      evaluation.metrics[s].values())]
    parts = [f"<h1>{_e(title)}</h1>",
             "<p>Every figure is a mean over the evaluated users with a 95&nbsp;% bootstrap "
             f"interval over users. <b>{_e(objective)}</b> is NDCG@{k} with each scenario's "
             "objective gains (the largest gain among a user's test events on an item, times "
             "the item's value where the objective has one); the other columns count every "
             "positive event as relevant.</p>"]
    if scenarios:
        _overview(evaluation, scenarios, objective, folder / "overview.png")
        parts.append('<h2>Each ranker alone and the blend</h2>'
                     '<img src="overview.png" alt="objective per scenario and ranker">')
        parts.append(_comparison_table(evaluation, scenarios))
    for name in evaluation.metrics:
        parts.append(f"<h2>Scenario {_e(name)}</h2>")
        parts.append(_metrics_table(evaluation.metrics[name], k))
        buckets = evaluation.buckets.get(name)
        if buckets:
            file = f"buckets-{_slug(name)}.png"
            _buckets(buckets, objective, name, folder / file)
            parts.append(f"<h3>By user activity</h3><p>Users by distinct items acted on "
                         f"before the cutoff: cold &lt; 5, light 5&ndash;49, heavy &ge; 50.</p>"
                         f'<img src="{file}" alt="{_e(name)} by activity bucket">')
            parts.append(_bucket_table(buckets, objective))
        for data, plot, kind, heading, text in (
                (evaluation.reliance.get(name), _reliance, "reliance",
                 "What the blender relies on",
                 "Each input's share of the blender's absolute contributions to the returned "
                 "items."),
                (evaluation.calibration.get(name), _calibration, "calibration", "Calibration",
                 "Predicted probability against the observed click rate on the test "
                 "impressions (10 equal-width bins).")):
            if data:
                file = f"{kind}-{_slug(name)}.png"
                plot(data, name, folder / file)
                parts.append(f"<h3>{heading}</h3><p>{text}</p>"
                             f'<img src="{file}" alt="{_e(name)} {kind}">')
        importance = evaluation.importance.get(name)
        if importance:
            parts.append("<h3>What the scorers rely on</h3>" + "".join(
                f"<p><b>{_e(scorer)}</b>: " + ", ".join(
                    f"{_e(f)} {v:.2f}" for f, v in list(shares.items())[:8]) + "</p>"
                for scorer, shares in importance.items()))
    page = folder / "index.html"
    page.write_text(_PAGE.format(title=_e(title), body="\n".join(parts)))
    return page


def _overview(evaluation: Evaluation, scenarios: list[str], objective: str, path: Path
              ) -> None:
    import matplotlib.pyplot as plt

    cols = min(3, len(scenarios))
    rows = math.ceil(len(scenarios) / cols)
    height = max(2.6, 0.42 * max(len(evaluation.metrics[s]) for s in scenarios) + 1.2)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, height * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), scenarios, strict=False):
        per = {r: m for r, m in evaluation.metrics[name].items() if objective in m}
        _bars(ax, per, objective)
        ax.set_title(f"{name}: {objective}")
    for ax in axes.ravel()[len(scenarios):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax: Any, per: Mapping[str, Mapping[str, float]], metric: str) -> None:
    names = list(per)
    values = [_num(per[n].get(metric)) for n in names]
    lo = [max(0.0, v - _num(per[n].get(f"{metric} lo"), v)) for n, v in zip(names, values,
                                                                           strict=True)]
    hi = [max(0.0, _num(per[n].get(f"{metric} hi"), v) - v) for n, v in zip(names, values,
                                                                          strict=True)]
    colours = [BLEND_COLOUR if n == BLEND else OTHER_COLOUR for n in names]
    ax.barh(range(len(names)), values, xerr=[lo, hi], color=colours, capsize=3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    for i, (v, h) in enumerate(zip(values, hi, strict=True)):
        ax.text(v + h, i, f"  {v:.3f}", va="center", ha="left", fontsize=8)
    ax.set_xlim(0, max([v + h for v, h in zip(values, hi, strict=True)] + [1e-9]) * 1.25)


def _buckets(buckets: Mapping[str, Mapping[str, Mapping[str, float]]], objective: str,
             name: str, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [b for b in BUCKETS if b in buckets]
    rankers = list(next(iter(buckets.values())))
    width = 0.8 / max(len(rankers), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(rankers) * len(labels)), 3.6))
    cmap = plt.get_cmap("tab10")
    for i, ranker in enumerate(rankers):
        values = [_num(buckets[b][ranker].get(objective)) for b in labels]
        lo = [max(0.0, v - _num(buckets[b][ranker].get(f"{objective} lo"), v))
              for b, v in zip(labels, values, strict=True)]
        hi = [max(0.0, _num(buckets[b][ranker].get(f"{objective} hi"), v) - v)
              for b, v in zip(labels, values, strict=True)]
        ax.bar(np.arange(len(labels)) + i * width, values, width, yerr=[lo, hi], capsize=2,
               label=ranker, color=BLEND_COLOUR if ranker == BLEND else cmap(i % 10))
    ax.set_xticks(np.arange(len(labels)) + width * (len(rankers) - 1) / 2,
                  [f"{b} ({int(next(iter(buckets[b].values()))['users'])} users)"
                   for b in labels])
    ax.set_ylabel(objective)
    ax.set_title(f"{name}: {objective} by user activity")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reliance(reliance: Mapping[str, Mapping[str, float]], name: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    labels = [b for b in BUCKETS if b in reliance]
    inputs = sorted({i for shares in reliance.values() for i, v in shares.items() if v > 0})
    fig, ax = plt.subplots(figsize=(7.0, 0.5 * len(labels) + 1.8))
    left = [0.0] * len(labels)
    cmap = plt.get_cmap("tab20")
    for j, key in enumerate(inputs):
        shares = [reliance[b].get(key, 0.0) for b in labels]
        ax.barh(labels, shares, left=left, label=key, color=cmap(j % 20))
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of absolute contributions")
    ax.set_title(f"{name}: what the blender relies on")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _calibration(calibration: Mapping[str, Mapping[str, Any]], name: str, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    top = 0.0
    for ranker, bins in calibration.items():
        count = np.asarray(bins["count"], dtype=float)
        predicted = np.asarray(bins["predicted"], dtype=float)
        observed = np.asarray(bins["observed"], dtype=float)
        full = count > 0
        ax.plot(predicted[full], observed[full], "o-", label=ranker)
        top = max(top, float(np.nanmax(np.r_[predicted[full], observed[full], 0.0])))
    top = top * 1.1 or 1.0
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="perfect")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(f"{name}: calibration")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _metrics_table(per: Mapping[str, Mapping[str, float]], k: int) -> str:
    columns = [f"objective@{k}", f"ndcg@{k}", f"recall@{k}", f"map@{k}", f"hit_rate@{k}",
               f"coverage@{k}", "gauc", "logloss", "ece"]
    columns = [c for c in columns if any(c in row for row in per.values())]
    head = "".join(f"<th>{_e(c)}</th>" for c in ["ranker", "users", *columns])
    rows = []
    for ranker, row in per.items():
        cells = [f"<td>{_e(ranker)}</td>", f"<td>{int(row.get('users', 0))}</td>"]
        for c in columns:
            value = _fmt(row.get(c))
            if f"{c} lo" in row:
                value += (f" <small>[{_fmt(row.get(f'{c} lo'))}, "
                          f"{_fmt(row.get(f'{c} hi'))}]</small>")
            cells.append(f"<td>{value}</td>")
        style = ' class="blend"' if ranker == BLEND else ""
        rows.append(f"<tr{style}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _bucket_table(buckets: Mapping[str, Mapping[str, Mapping[str, float]]],
                  objective: str) -> str:
    labels = [b for b in BUCKETS if b in buckets]
    rankers = list(next(iter(buckets.values())))
    head = "<th>ranker</th>" + "".join(
        f"<th>{_e(b)} ({int(next(iter(buckets[b].values()))['users'])} users)</th>"
        for b in labels)
    rows = []
    for ranker in rankers:
        cells = "".join(
            f"<td>{_fmt(buckets[b][ranker].get(objective))} <small>"
            f"[{_fmt(buckets[b][ranker].get(f'{objective} lo'))}, "
            f"{_fmt(buckets[b][ranker].get(f'{objective} hi'))}]</small></td>" for b in labels)
        style = ' class="blend"' if ranker == BLEND else ""
        rows.append(f"<tr{style}><td>{_e(ranker)}</td>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _comparison_table(evaluation: Evaluation, scenarios: list[str]) -> str:
    rows = []
    for name in scenarios:
        c = evaluation.comparison.get(name)
        if not c:
            continue
        rows.append(f"<tr><td>{_e(name)}</td><td>{_e(c['best_single'])} "
                    f"{_fmt(c['best_single_value'])}</td><td>{_fmt(c['blend'])}</td>"
                    f"<td>{c['difference']:+.4f} <small>[{_fmt(c['difference lo'])}, "
                    f"{_fmt(c['difference hi'])}]</small></td></tr>")
    if not rows:
        return ""
    return ("<table><tr><th>scenario</th><th>best single ranker</th><th>blend</th>"
            "<th>blend &minus; best (paired, 95&nbsp;%)</th></tr>" + "".join(rows)
            + "</table>")


def _num(value: Any, default: float = 0.0) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _fmt(value: Any) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "&ndash;"
    return f"{value:.4f}" if math.isfinite(value) else "&ndash;"


def _e(text: Any) -> str:
    return html.escape(str(text))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr.blend {{ background: #fde8e8; font-weight: 600; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
small {{ color: #666; }}
</style></head>
<body>
{body}
</body></html>
"""
