"""The ``hybridrec`` command line, built by ``make_cli`` (plugins add commands through the
``register_commands`` hook). Heavy libraries are imported inside the commands that use them,
so ``hybridrec --help`` stays fast and never imports torch."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from hybridrec.workspace import Workspace


def _ws(ctx: click.Context) -> Workspace:
    return ctx.find_object(Workspace) or Workspace.from_env()


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def metrics_table(metrics: dict[str, dict[str, dict[str, float]]], k: int) -> str:
    """One row per scenario and scorer; the blend last in each scenario."""
    rows = []
    for scenario, per in metrics.items():
        for scorer, values in per.items():
            rows.append({"scenario": scenario, "scorer": scorer, **values,
                         "users": int(values.get("users", 0))})
    cols = ["scenario", "scorer", "users", f"ndcg@{k}", f"recall@{k}", f"map@{k}",
            f"hit_rate@{k}", f"coverage@{k}", "auc", "gauc"]
    return _table(rows, cols)


def make_cli() -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("--repo", type=click.Path(file_okay=False, path_type=Path),
                  help="Feast feature repository [env HYBRIDREC_FEATURE_REPO; ./feature_repo]")
    @click.option("--bundles", type=click.Path(file_okay=False, path_type=Path),
                  help="Directory of trained bundles [env HYBRIDREC_BUNDLES; ./bundles]")
    @click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
    @click.version_option(package_name="hybridrec")
    @click.pass_context
    def cli(ctx: click.Context, repo: Path | None, bundles: Path | None, verbose: int) -> None:
        """hybridrec: hybrid recommendations from pluggable scorers over Feast features.

        \b
        Typical run:
          hybridrec data synthetic          # or: hybridrec data movielens PATH
          (cd feature_repo && feast apply)
          hybridrec materialize
          hybridrec train
          hybridrec serve
        """
        level = logging.WARNING - 10 * verbose
        logging.basicConfig(level=max(level, logging.DEBUG),
                            format="%(levelname)s %(name)s: %(message)s")
        ctx.obj = Workspace.from_env(repo, bundles)

    @cli.command()
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.option("--strict", is_flag=True, help="Fail if any plugin has a problem.")
    def plugins(as_json: bool, strict: bool) -> None:
        """List plugins, their versions and what each registered."""
        from hybridrec.plugins import PluginError, get_registry

        try:
            registry = get_registry(strict=strict)
            info = registry.as_dict()
        except PluginError as exc:
            _fail(f"plugin problems (strict mode): {exc}")
            return
        if as_json:
            click.echo(json.dumps(info, indent=2))
            return
        for plugin in info:
            kind = "built-in" if plugin["builtin"] else "installed"
            click.echo(f"{plugin['name']} {plugin['version'] or '?'} ({kind})")
            for what, names in plugin["registered"].items():
                click.echo(f"    {what}: {', '.join(names)}")
            for problem in plugin["problems"]:
                click.echo(f"    PROBLEM: {problem}")
        if registry.problems:
            click.echo(f"{len(registry.problems)} plugin problem(s); see above.", err=True)

    @cli.group()
    def data() -> None:
        """Write a dataset as Parquet under the feature repository's data/ directory."""

    @data.command()
    @click.option("--users", default=2000, show_default=True, type=click.IntRange(1))
    @click.option("--items", default=500, show_default=True, type=click.IntRange(1),
                  help="Items per content scenario (shop, video).")
    @click.option("--ads", default=100, show_default=True, type=click.IntRange(1))
    @click.option("--events", default=100_000, show_default=True, type=click.IntRange(1),
                  help="About this many events in all.")
    @click.option("--weeks", default=8, show_default=True, type=click.IntRange(1))
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.pass_context
    def synthetic(ctx: click.Context, **sizes: int) -> None:
        """The embedded multi-scenario world (shop, video, ads), seeded and deterministic."""
        from hybridrec.data import synthetic as gen
        from hybridrec.data.tables import write_dataset

        ws = _ws(ctx)
        counts = write_dataset(gen.generate(gen.SyntheticConfig(**sizes)), ws.data_dir)
        _report_written(ws, counts)

    @data.command()
    @click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.pass_context
    def movielens(ctx: click.Context, path: Path) -> None:
        """MovieLens 100K from PATH (u.data, u.item, u.user) as the 'movies' scenario."""
        from hybridrec.data import movielens as ml
        from hybridrec.data.tables import write_dataset

        ws = _ws(ctx)
        try:
            dataset = ml.load(path)
        except FileNotFoundError as exc:
            _fail(str(exc))
        _report_written(ws, write_dataset(dataset, ws.data_dir))

    @cli.command()
    @click.pass_context
    def materialize(ctx: click.Context) -> None:
        """Load the latest feature values into the online store (like 'feast materialize')."""
        from hybridrec.features import materialize as run

        ws = _ws(ctx)
        try:
            views = run(ws.feature_repo)
        except (FileNotFoundError, RuntimeError) as exc:
            _fail(str(exc))
        click.echo(f"materialised {len(views)} feature views: {', '.join(views)}")

    def _run_training(ctx: click.Context, write: bool, config_path: Path | None,
                      **opts: Any) -> Any:
        from hybridrec import training

        ws = _ws(ctx)
        try:
            config = training.load_config(config_path)
            return training.run(ws, write=write, config=config, **opts)
        except (training.TrainingError, FileNotFoundError, RuntimeError, KeyError,
                ValueError) as exc:
            # KeyError's str() is the repr of its message; show the message itself
            _fail(str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))

    common = [
        click.option("-s", "--scenario", "scenarios", multiple=True,
                     help="Scenario to train (repeatable); default: every one with events."),
        click.option("--scorer", "only_scorers", multiple=True,
                     help="Only these scorers (repeatable); default: all that apply."),
        click.option("--test-fraction", default=0.1, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     help="Latest share of events held out for evaluation."),
        click.option("-k", default=10, show_default=True, type=click.IntRange(1)),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--config", "config_path", envvar="HYBRIDREC_CONFIG",
                     type=click.Path(dir_okay=False, path_type=Path),
                     help="TOML file with one table of parameters per component "
                          "([als], [popularity], [weighted]) [env HYBRIDREC_CONFIG]."),
    ]

    def with_common(f: Any) -> Any:
        for option in reversed(common):
            f = option(f)
        return f

    @cli.command()
    @with_common
    @click.option("--refit/--no-refit", default=True, show_default=True,
                  help="Refit on the whole window after evaluating.")
    @click.option("--keep", default=5, show_default=True, type=click.IntRange(1),
                  help="Bundles to keep; older ones are deleted.")
    @click.pass_context
    def train(ctx: click.Context, quiet: bool, keep: int, k: int, **opts: Any) -> None:
        """Fit every scorer from Feast training frames, evaluate, write a bundle."""
        from hybridrec.training import prune

        result = _run_training(ctx, True, progress=not quiet, k=k, **opts)
        click.echo(metrics_table(result.metrics, k))
        for note in result.notes:
            click.echo(f"note: {note}", err=True)
        prune(_ws(ctx), keep)
        click.echo(f"\nbundle {result.version} written to {result.path} and made current")

    @cli.command()
    @with_common
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def evaluate(ctx: click.Context, quiet: bool, as_json: bool, k: int, **opts: Any) -> None:
        """Per-scenario, per-scorer offline metrics on a temporal hold-out (no bundle)."""
        result = _run_training(ctx, False, progress=not quiet, refit=False, k=k, **opts)
        if as_json:
            click.echo(json.dumps(result.metrics, indent=2))
        else:
            click.echo(metrics_table(result.metrics, k))

    @cli.command()
    @click.argument("user_id")
    @click.option("-s", "--scenario", required=True)
    @click.option("-k", default=None, type=click.IntRange(1), help="[scenario default]")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.pass_context
    def recommend(ctx: click.Context, user_id: str, scenario: str, k: int | None,
                  as_json: bool) -> None:
        """Print a ranked list for USER_ID from the current bundle."""
        import numpy as np

        from hybridrec.bundle import Bundle, BundleError
        from hybridrec.features import open_store
        from hybridrec.recommender import InvalidRequest, Recommender, UnknownScenario

        ws = _ws(ctx)
        try:
            rec = Recommender(Bundle.load(ws.bundles), open_store(ws.feature_repo))
            result = rec.recommend(user_id, scenario, k)
        except (BundleError, UnknownScenario, InvalidRequest, FileNotFoundError) as exc:
            _fail(str(exc))
        if as_json:
            click.echo(json.dumps(result.__dict__, indent=2))
            return
        titles = rec.items.take(np.asarray(result.item_ids, dtype=str),
                                ["item_profile__title"]).get("item_profile__title")
        rows = [{"rank": i + 1, "item": item, "score": score,
                 "title": titles[i] if titles is not None else ""}
                for i, (item, score) in enumerate(zip(result.item_ids, result.scores,
                                                      strict=True))]
        state = " (cold start: scenario popularity)" if result.cold_start else ""
        click.echo(f"{scenario} for {user_id}{state}, bundle {result.bundle_version}")
        click.echo(_table(rows, ["rank", "item", "score", "title"]))

    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--bundle", "bundle_version", default=None,
                  help="Serve this bundle version instead of following 'current'.")
    @click.option("--refresh-seconds", default=300.0, show_default=True, type=float,
                  help="Item-cache refresh and bundle-switch interval; 0 disables.")
    @click.option("--log-level", default="info", show_default=True)
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int, bundle_version: str | None,
              refresh_seconds: float, log_level: str) -> None:
        """Serve the HTTP API (POST /v1/recommend, /v1/feedback; docs at /docs)."""
        import uvicorn

        from hybridrec.server.app import create_app

        app = create_app(_ws(ctx), bundle_version, refresh_seconds)
        uvicorn.run(app, host=host, port=port, log_level=log_level)

    from hybridrec.plugins import get_registry

    get_registry().add_commands(cli)
    return cli


def _report_written(ws: Workspace, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        click.echo(f"{n:>9,} rows  {ws.data_dir / name}")
    if ws.feedback_db.exists():
        click.echo(f"note: the feedback log {ws.feedback_db} was kept; its events join the next "
                   "training run (delete it to start fresh)", err=True)
    click.echo(f"next: (cd {ws.feature_repo} && feast apply) && hybridrec materialize")


def main(argv: list[str] | None = None) -> None:
    try:
        make_cli()(args=argv, prog_name="hybridrec")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
