"""``hybridrec train`` and ``hybridrec evaluate``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hybridrec.commands import fail, message_of, table, workspace

COMMON = [
    click.option("-s", "--scenario", "scenarios", multiple=True,
                 help="Scenario to train and evaluate (repeatable); default: every one with "
                      "events that an installed plugin registers. A temporal split's cutoff "
                      "is taken over the events of the scenarios chosen."),
    click.option("--scorer", "only_scorers", multiple=True,
                 help="Only these scorers (repeatable); default: all that apply."),
    click.option("--test-fraction", default=0.1, show_default=True,
                 type=click.FloatRange(0, 1, min_open=True, max_open=True),
                 help="Latest share of events held out for evaluation."),
    click.option("--split", default="temporal", show_default=True,
                 type=click.Choice(["temporal", "random", "leave-last"]),
                 help="How the test slice is held out: the latest events (temporal), a "
                      "seeded random share of every user's events (random), or each user's "
                      "latest events (leave-last)."),
    click.option("--seed", default=0, show_default=True, type=int,
                 help="Seed of the random split."),
    click.option("--report", "report", type=click.Path(file_okay=False, path_type=Path),
                 help="Write an HTML report with plots (index.html) to this folder."),
    click.option("-k", default=10, show_default=True, type=click.IntRange(1)),
    click.option("--quiet", is_flag=True, help="No progress bars."),
    click.option("--config", "config_path", envvar="HYBRIDREC_CONFIG",
                 type=click.Path(dir_okay=False, path_type=Path),
                 help="TOML file with one table of parameters per component "
                      "([als], [popularity], [weighted]) [env HYBRIDREC_CONFIG]."),
]


def with_common(f: Any) -> Any:
    for option in reversed(COMMON):
        f = option(f)
    return f


def metrics_table(metrics: dict[str, dict[str, dict[str, float]]], k: int) -> str:
    """One row per scenario and ranker; the blend last in each scenario."""
    cols = ["scenario", "scorer", "users", f"objective@{k}", f"ndcg@{k}", f"recall@{k}",
            f"map@{k}",
            f"hit_rate@{k}", f"coverage@{k}", "auc", "gauc", "logloss", "ece"]
    rows = []
    for scenario, per in metrics.items():
        for scorer, values in per.items():
            row = {c: float("nan") for c in cols[3:]}  # "-" where a metric does not apply
            row.update(values)
            rows.append({**row, "scenario": scenario, "scorer": scorer,
                         "users": int(values.get("users", 0))})
    return table(rows, cols)


def comparison_lines(result: Any) -> str:
    """Per scenario, the blend against the best single ranker on the objective."""
    evaluation = getattr(result, "evaluation", None)
    lines = []
    for scenario, c in (evaluation.comparison.items() if evaluation else []):
        if c:
            lines.append(f"{scenario}: blend {c['metric']} {c['blend']:.4f} vs best single "
                         f"{c['best_single']} {c['best_single_value']:.4f}: "
                         f"{c['difference']:+.4f} [95% {c['difference lo']:+.4f}, "
                         f"{c['difference hi']:+.4f}]")
    return ("\n" + "\n".join(lines)) if lines else ""


def importance_lines(importance: dict[str, dict[str, dict[str, float]]], top: int = 8
                     ) -> str:
    """The inputs each explaining scorer relies on most, one line per scenario and scorer."""
    lines = []
    for scenario, per in importance.items():
        for scorer, shares in per.items():
            best = ", ".join(f"{name} {share:.2f}" for name, share in list(shares.items())[:top])
            lines.append(f"{scorer} in {scenario}, importance (share of gain): {best}")
    return ("\n" + "\n".join(lines)) if lines else ""


def _guarded(run: Callable[[], Any]) -> Any:
    """Run training or evaluation; a problem the user can fix becomes a one-line error."""
    from hybridrec.bundle import BundleError
    from hybridrec.config import ConfigError
    from hybridrec.features import FeatureError
    from hybridrec.training import TrainingError

    try:
        return run()
    except (TrainingError, ConfigError, FeatureError, BundleError, FileNotFoundError,
            KeyError, ValueError) as exc:
        fail(message_of(exc))


def _write_lists(path: Path, lists: dict[str, Any]) -> None:
    with open(path, "w") as out:
        for scenario, users in lists.items():
            for user, ranked in users.items():
                out.write(json.dumps({"scenario": scenario, "user_id": user, **ranked}) + "\n")


def _off_policy(ws: Any, policies: tuple[str, ...], as_json: bool, seed: int) -> None:
    """``evaluate --ope``: every candidate policy per scenario, from the feedback log."""
    from hybridrec.feedback import FeedbackStoreError, open_feedback
    from hybridrec.metrics import json_safe
    from hybridrec.offpolicy import BUNDLE, PolicyError, evaluate_logs, parse_policy, table
    from hybridrec.plugins import get_registry

    try:
        for spec in policies:
            parse_policy(spec)
    except PolicyError as exc:
        fail(str(exc))
    rankers = _bundle_rankers(ws, [p for p in policies if p.startswith(BUNDLE)])
    try:
        log = open_feedback(ws, create=False)
    except FeedbackStoreError as exc:
        fail(str(exc))
    if log is None:
        fail(f"no feedback log at {ws.feedback_location}: serve (hybridrec serve) and "
             "collect feedback first")
    try:
        decisions = log.decisions()
    finally:
        log.close()
    scenarios, version = _serving_scenarios(ws, get_registry())
    if version is not None and not any(d["bundle_version"] == version for d in decisions):
        version = None  # nothing served by the current bundle yet: every bundle's logs
    results = evaluate_logs(decisions, scenarios, policies, seed=seed,
                            bundle_version=version, rankers=rankers)
    if not results:
        fail("the feedback log holds no served decisions yet")
    others = sum(d["bundle_version"] != version for d in decisions) if version else 0
    if others:
        click.echo(f"note: {others} decisions of other bundles than the current one "
                   f"({version}) left out", err=True)
    if as_json:
        click.echo(json.dumps(json_safe({s: {p: {**r, "estimates": {
            e: est.as_dict() for e, est in r["estimates"].items()}} for p, r in per.items()}
            for s, per in results.items()}), indent=2, allow_nan=False))
    else:
        click.echo(table(results))


def _bundle_rankers(ws: Any, specs: list[str]) -> dict[str, Any]:
    """``bundle:VERSION`` candidates as rankers over the logged requests."""
    from hybridrec.bundle import Bundle, BundleError
    from hybridrec.features import open_store
    from hybridrec.offpolicy import BUNDLE, bundle_ranker
    from hybridrec.recommender import Recommender

    out = {}
    for spec in specs:
        version = spec.removeprefix(BUNDLE)
        try:
            bundle = Bundle.load(ws.bundles, None if version == "current" else version)
        except (BundleError, FileNotFoundError) as exc:
            fail(f"candidate {spec!r}: {exc}")
        out[spec] = bundle_ranker(Recommender(bundle, lambda: open_store(ws.feature_repo)))
    return out


def _serving_scenarios(ws: Any, registry: Any) -> tuple[dict[str, Any], str | None]:
    """The registered scenarios with the current bundle's settings (its objectives), and
    that bundle's version (None without one)."""
    from hybridrec.bundle import Bundle, BundleError

    scenarios = dict(registry.scenarios)
    try:
        bundle = Bundle.load(ws.bundles)
    except (BundleError, FileNotFoundError):
        return scenarios, None
    return {**scenarios, **{n: p.scenario(scenarios[n]) for n, p in bundle.plans.items()
                            if n in scenarios}}, bundle.version


def add_to(cli: click.Group) -> None:
    _add_train(cli)
    _add_evaluate(cli)


def _add_train(cli: click.Group) -> None:
    @cli.command()
    @with_common
    @click.option("--refit/--no-refit", default=True, show_default=True,
                  help="Refit on the whole window after evaluating.")
    @click.option("--keep", default=5, show_default=True, type=click.IntRange(1),
                  help="Bundles to keep; older ones are deleted.")
    @click.pass_context
    def train(ctx: click.Context, quiet: bool, keep: int, k: int, config_path: Path | None,
              **opts: Any) -> None:
        """Fit every component from Feast training frames, evaluate, write a bundle."""
        from hybridrec import training
        from hybridrec.bundle import prune
        from hybridrec.config import load_config

        ws = workspace(ctx)
        result = _guarded(lambda: training.run(ws, config=load_config(config_path), k=k,
                                               progress=not quiet, **opts))
        click.echo(metrics_table(result.metrics, k))
        click.echo(comparison_lines(result))
        click.echo(importance_lines(result.importance))
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        if opts.get("report"):
            click.echo(f"report written to {opts['report'] / 'index.html'}")
        prune(ws.bundles, keep)
        click.echo(f"\nbundle {result.version} written to {result.path} and made current")



def _add_evaluate(cli: click.Group) -> None:
    @cli.command()
    @with_common
    @click.option("--bundle", "bundle_version", default=None, metavar="VERSION",
                  help="Evaluate this stored bundle ('current' for the live one) on the split "
                       "it records, instead of fitting afresh.")
    @click.option("--lists", "lists_path", type=click.Path(dir_okay=False, path_type=Path),
                  help="Also write every evaluated user's top-k lists (the blend and each "
                       "scorer) to this file, one JSON object per line.")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.option("--baseline-blender", "baselines", multiple=True, metavar="NAME",
                  help="Also rank with this blender over the same scores, as '<NAME> blend' "
                       "(repeatable; 'weighted' for equal weights).")
    @click.option("--ope", is_flag=True,
                  help="Instead: estimate candidate blend policies' value from the server's "
                       "logged decisions and feedback (IPS, SNIPS, DM and DR).")
    @click.option("--policy", "policies", multiple=True, metavar="SPEC",
                  help="With --ope, a candidate: 'logged', 'greedy', an arm ('offline', "
                       "'toward:als.click'), a mixture 'offline=0.8,toward:als.click=0.2', "
                       "or a trained bundle 'bundle:VERSION' (repeatable; default: logged, "
                       "greedy and offline).")
    @click.pass_context
    def evaluate(ctx: click.Context, quiet: bool, as_json: bool, k: int,
                 bundle_version: str | None, lists_path: Path | None,
                 config_path: Path | None, ope: bool, policies: tuple[str, ...],
                 **opts: Any) -> None:
        """Per-scenario, per-scorer offline metrics with 95% intervals on a hold-out (no
        bundle written); with --ope, off-policy estimates from the server's logs."""
        from hybridrec import training
        from hybridrec.config import load_config

        ws = workspace(ctx)
        if ope:
            _off_policy(ws, policies or ("logged", "greedy", "offline"), as_json,
                        opts["seed"])
            return
        if policies:
            fail("--policy is a candidate for --ope")
        keep_lists = lists_path is not None
        if bundle_version is not None:
            if opts.pop("baselines"):
                fail("--baseline-blender needs fitting afresh; leave out --bundle")
            if opts["split"] != "temporal" or opts["seed"]:
                fail("a bundle is evaluated on the split it records; --split and --seed "
                     "apply when fitting afresh (leave out --bundle)")
            version = None if bundle_version == "current" else bundle_version
            result = _guarded(lambda: training.evaluate_bundle(
                ws, version, k, progress=not quiet, keep_lists=keep_lists,
                report=opts["report"]))
        else:
            result = _guarded(lambda: training.run(
                ws, config=load_config(config_path), k=k, write=False, refit=False,
                progress=not quiet, keep_lists=keep_lists, **opts))
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        if lists_path is not None:
            _write_lists(lists_path, result.lists)
        from hybridrec.metrics import json_safe

        evaluation = result.evaluation
        if as_json:
            click.echo(json.dumps(json_safe({
                "metrics": result.metrics, "feature_importance": result.importance,
                "comparison": evaluation.comparison if evaluation else {},
                "buckets": evaluation.buckets if evaluation else {},
                "reliance": evaluation.reliance if evaluation else {}}),
                indent=2, allow_nan=False))
        else:
            click.echo(metrics_table(result.metrics, k))
            click.echo(comparison_lines(result))
            click.echo(importance_lines(result.importance))
        if opts["report"] is not None:
            click.echo(f"report written to {opts['report'] / 'index.html'}", err=as_json)
