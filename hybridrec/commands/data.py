"""``hybridrec data synthetic|movielens|obd`` and ``hybridrec materialize``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hybridrec import columns as C
from hybridrec.commands import fail, workspace
from hybridrec.workspace import Workspace


def add_to(cli: click.Group) -> None:
    @cli.group()
    def data() -> None:
        """Write a dataset as Parquet under the feature repository's data/ directory."""

    _synthetic(data)
    _files(data)
    _materialize(cli)


def _synthetic(data: click.Group) -> None:
    @data.command()
    @click.option("--users", default=2000, show_default=True, type=click.IntRange(1))
    @click.option("--items", default=500, show_default=True, type=click.IntRange(1),
                  help="Items per content scenario (shop, video).")
    @click.option("--ads", default=100, show_default=True, type=click.IntRange(1))
    @click.option("--events", default=100_000, show_default=True, type=click.IntRange(1),
                  help="The event budget: shop and video about 80 % of it, and about as "
                       "many ad impressions again.")
    @click.option("--ad-traffic", default=1.0, show_default=True,
                  type=click.FloatRange(0, min_open=True),
                  help="Ad impressions as a share of the event budget.")
    @click.option("--weeks", default=8, show_default=True, type=click.IntRange(1))
    @click.option("--end", default=None, metavar="TIME",
                  help="When the world's events end (ISO 8601, UTC unless a zone is given); "
                       "default: now, to the hour. Fix it for reproducible data.")
    @click.option("--seed", default=0, show_default=True, type=int)
    @click.pass_context
    def synthetic(ctx: click.Context, end: str | None, **sizes: Any) -> None:
        """The embedded multi-scenario world (shop, video, ads, and the scenarios installed
        plugins add to it), seeded and deterministic."""
        from hybridrec.data import synthetic as gen
        from hybridrec.data.tables import write_dataset

        ws = workspace(ctx)
        try:
            config = gen.SyntheticConfig(end=end, **sizes)
            dataset = gen.generate(config)
        except ValueError as exc:  # SyntheticDataError too: it names the plugin's scenario
            fail(str(exc))
        counts = write_dataset(dataset, ws.data_dir)
        scenarios = dataset.events[C.SCENARIO].value_counts()
        click.echo("scenarios: " + ", ".join(f"{name} ({n:,} events)"
                                            for name, n in scenarios.items()))
        _report_written(ws, counts)



def _files(data: click.Group) -> None:
    @data.command()
    @click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.pass_context
    def movielens(ctx: click.Context, path: Path) -> None:
        """MovieLens 100K from PATH (u.data, u.item, u.user) as the 'movies' scenario."""
        from hybridrec.data import movielens as ml
        from hybridrec.data.tables import write_dataset

        ws = workspace(ctx)
        try:
            dataset = ml.load(path)
        except FileNotFoundError as exc:
            fail(str(exc))
        _report_written(ws, write_dataset(dataset, ws.data_dir))

    @data.command()
    @click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @click.option("--policy", "policies", multiple=True, type=click.Choice(["random", "bts"]),
                  help="Behaviour policy logs to load (repeatable); default: both.")
    @click.option("--campaign", "campaigns", multiple=True,
                  type=click.Choice(["men", "women"]),
                  help="Campaigns to load, each the scenario obd_CAMPAIGN (repeatable); "
                       "default: both.")
    @click.pass_context
    def obd(ctx: click.Context, path: Path, policies: tuple[str, ...],
            campaigns: tuple[str, ...]) -> None:
        """The Open Bandit Dataset sample from PATH ({random,bts}/{men,women}/): impressions
        and clicks with slot, logging policy and propensity, as scenarios obd_men and
        obd_women."""
        from hybridrec.data import obd as loader
        from hybridrec.data.tables import write_dataset

        ws = workspace(ctx)
        try:
            dataset = loader.load(path, policies or loader.POLICIES,
                                  campaigns or loader.CAMPAIGNS)
        except FileNotFoundError as exc:
            fail(str(exc))
        _report_written(ws, write_dataset(dataset, ws.data_dir))



def _materialize(cli: click.Group) -> None:
    @cli.command()
    @click.pass_context
    def materialize(ctx: click.Context) -> None:
        """Load the latest feature values into the online store (like 'feast materialize')."""
        from hybridrec.features import FeatureError
        from hybridrec.features import materialize as run

        ws = workspace(ctx)
        try:
            views = run(ws.feature_repo)
        except (FileNotFoundError, FeatureError) as exc:
            fail(str(exc))
        click.echo(f"materialised {len(views)} feature views: {', '.join(views)}")


def _report_written(ws: Workspace, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        empty = "  (none in this data set; written so every feature view has a source)"
        click.echo(f"{n:>9,} rows  {ws.data_dir / name}{empty if not n else ''}")
    if ws.feedback_db.exists():
        click.echo(f"note: the feedback log {ws.feedback_db} was kept; its events join the next "
                   "training run (delete it to start fresh)", err=True)
    click.echo(f"next: (cd {ws.feature_repo} && feast apply) && hybridrec materialize")
