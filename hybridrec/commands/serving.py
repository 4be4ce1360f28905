"""``hybridrec recommend`` and ``hybridrec serve``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from hybridrec.commands import fail, table, workspace
from hybridrec.workspace import (
    DEFAULT_SCORING_THREADS,
    DEFAULT_SERVED_RETENTION_DAYS,
    ENV_EXPLORATION_SEED,
    ENV_SCORING_THREADS,
    ENV_SERVED_RETENTION,
    exploration_seed,
    scoring_threads,
    served_retention_days,
)


def add_to(cli: click.Group) -> None:
    _add_recommend(cli)
    _add_serve(cli)


def _add_recommend(cli: click.Group) -> None:
    @cli.command()
    @click.argument("user_id")
    @click.option("-s", "--scenario", required=True)
    @click.option("-k", default=None, type=int, help="[scenario default]")
    @click.option("--json", "as_json", is_flag=True,
                  help="Print the answer as JSON, in the shape POST /v1/recommend returns.")
    @click.pass_context
    def recommend(ctx: click.Context, user_id: str, scenario: str, k: int | None,
                  as_json: bool) -> None:
        """Print a ranked list for USER_ID from the current bundle."""
        from hybridrec.bundle import Bundle, BundleError
        from hybridrec.features import FeatureError, open_store
        from hybridrec.feedback import FeedbackStoreError, open_feedback
        from hybridrec.recommender import InvalidRequest, Recommender, UnknownScenario

        ws = workspace(ctx)
        try:
            feedback = open_feedback(ws, create=False)
            rec = Recommender(Bundle.load(ws.bundles), lambda: open_store(ws.feature_repo),
                              feedback)
            result = rec.recommend(user_id, scenario, k)
        except (BundleError, FeatureError, FeedbackStoreError, UnknownScenario, InvalidRequest,
                FileNotFoundError) as exc:
            fail(str(exc))
        if as_json:
            click.echo(json.dumps(result.as_dict(), indent=2))
            return
        titles = _titles(ws)
        rows = [{"rank": n, "item": item.item_id, "score": item.score,
                 "title": titles.get(item.item_id, "")}
                for n, item in enumerate(result.items, 1)]
        cold = f" (cold start: {result.fallback})" if result.cold_start else ""
        click.echo(f"{result.scenario} for {user_id}{cold}, bundle {result.bundle_version}")
        click.echo(table(rows, ["rank", "item", "score", "title"]))


def _add_serve(cli: click.Group) -> None:
    @cli.command()
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
    @click.option("--bundle", "bundle_version", default=None,
                  help="Serve this bundle version instead of following 'current'.")
    @click.option("--refresh-seconds", default=300.0, show_default=True, type=float,
                  help="Item-feature refresh and bundle-switch interval; 0 disables.")
    @click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
                  help="Worker processes, each with its own copy of the bundle; they share "
                       "the feedback log and the adaptive state.")
    @click.option("--log-level", default="info", show_default=True)
    @click.option("--access-log", type=click.Choice(["plain", "json", "off"]), default="plain",
                  show_default=True, help="Per request: uvicorn's line, one JSON line with "
                  "the request id, route, status and milliseconds, or nothing (fastest).")
    @click.option("--cpu-affinity", type=click.Choice(["auto", "off"]), default="off",
                  show_default=True, help="auto: pin each worker process to a CPU of its "
                  "own (none another pinned hybridrec server of this machine holds) when "
                  "there are at least as many CPUs as workers; a request's thread hand-offs "
                  "cost less on one CPU. For a host or a container with its own CPUs: "
                  "containers sharing a host's CPUs do not see each other's claims. off: "
                  "leave placement to the operating system.")
    @click.option("--shutdown-seconds", default=30.0, show_default=True, type=float,
                  help="On SIGTERM, how long requests in flight may take to finish.")
    @SERVED_RETENTION
    @SCORING_THREADS
    @EXPLORATION_SEED
    @click.option("--header-timeout", default=10.0, show_default=True,
                  type=click.FloatRange(min=0, min_open=True),
                  help="Seconds a client has to send a request's headers, from connecting or "
                       "from the previous answer; then its connection is closed.")
    @click.option("--body-timeout", default=30.0, show_default=True,
                  type=click.FloatRange(min=0, min_open=True),
                  help="Seconds a client has to send a request's body once its headers are "
                       "in; then its connection is closed.")
    @click.pass_context
    def serve(ctx: click.Context, host: str, port: int, bundle_version: str | None,
              refresh_seconds: float, workers: int, log_level: str, access_log: str,
              cpu_affinity: str, shutdown_seconds: float, header_timeout: float,
              body_timeout: float) -> None:
        """Serve the HTTP API (POST /v1/recommend, /v1/feedback; docs at /docs)."""
        import logging
        import os

        import uvicorn

        from hybridrec.server import app as server
        from hybridrec.server.protocol import deadline_protocol
        from hybridrec.system import cpu_threads
        from hybridrec.workspace import ENV_BUNDLES, ENV_REPO

        logging.getLogger("hybridrec").setLevel(log_level.upper())
        os.environ[server.ENV_ACCESS_LOG] = access_log
        pin = cpu_affinity == "auto" and workers <= cpu_threads()
        os.environ[server.ENV_PIN_CPU] = "1" if pin else "0"
        if workers > 1 and os.environ.get(ENV_EXPLORATION_SEED):
            raise click.UsageError(f"--exploration-seed (or {ENV_EXPLORATION_SEED}) makes a "
                                   "run reproducible with one worker only: with --workers "
                                   f"{workers} every worker would draw the same arms", ctx)
        ws = workspace(ctx)
        options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level,
                   "access_log": access_log == "plain", "timeout_keep_alive": 5,
                   "timeout_graceful_shutdown": shutdown_seconds,
                   "http": deadline_protocol(header_timeout, body_timeout)}
        if workers == 1:
            uvicorn.run(server.create_app(ws, bundle_version, refresh_seconds), **options)
            return
        os.environ.update({ENV_REPO: str(ws.feature_repo), ENV_BUNDLES: str(ws.bundles),
                           server.ENV_SERVE_BUNDLE: bundle_version or "",
                           server.ENV_REFRESH: str(refresh_seconds)})
        uvicorn.run("hybridrec.server.app:create_app_from_env", factory=True,
                    workers=workers, **options)


def _to_environment(check: Callable[[str | None, str], object], option: str, variable: str
                   ) -> Callable[[click.Context, click.Parameter, str | None], None]:
    """An option's callback: ``check`` the value (a usage error naming the option and its
    variable when it raises ValueError) and hand it to the server and its worker processes
    in the environment, which ``ServerState`` reads."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        import os

        try:
            checked = check(value, f"{option} (or {variable})")
        except ValueError as exc:
            raise click.UsageError(str(exc), ctx) from None
        os.environ[variable] = "" if checked is None else repr(checked)
    return callback


#: ``hybridrec serve --scoring-threads N``.
SCORING_THREADS = click.option(
    "--scoring-threads", metavar="N", default=str(DEFAULT_SCORING_THREADS), show_default=True,
    envvar=ENV_SCORING_THREADS, show_envvar=True, expose_value=False,
    callback=_to_environment(scoring_threads, "--scoring-threads", ENV_SCORING_THREADS),
    help="Recommendations each worker process computes at once, "
    "each on a thread; more requests wait for a free one. A process runs Python on about "
    "one core, so a few suffice: more only contend for it.")


#: ``hybridrec serve --exploration-seed N``.
EXPLORATION_SEED = click.option(
    "--exploration-seed", metavar="N", default="", show_default="unseeded",
    envvar=ENV_EXPLORATION_SEED, show_envvar=True, expose_value=False,
    callback=_to_environment(exploration_seed, "--exploration-seed", ENV_EXPLORATION_SEED),
    help="Seed the adaptive blend's exploration draws (per scenario and bundle), for a "
    "reproducible run: one worker, and the policy re-read before every decision (POST "
    "/v1/admin/scenarios/NAME/policy with {\"refresh_seconds\": 0}).")


#: ``hybridrec serve --served-retention-days DAYS``.
SERVED_RETENTION = click.option(
    "--served-retention-days", metavar="DAYS", default=f"{DEFAULT_SERVED_RETENTION_DAYS:g}",
    show_default=True, envvar=ENV_SERVED_RETENTION, show_envvar=True, expose_value=False,
    callback=_to_environment(served_retention_days, "--served-retention-days",
                             ENV_SERVED_RETENTION),
    help="Delete served rows (each answer with its decision) older than "
    "this, hourly, except each scenario's latest lists the adaptive window reads; 0 keeps "
    "them forever. Feedback events are never deleted.")


def _titles(ws: object) -> dict[str, str]:
    """Item titles from the data, for display (none when the table is not there)."""
    from hybridrec import columns as C
    from hybridrec.data.tables import read_table

    try:
        items = read_table(ws.data_dir, C.ITEMS_FILE)  # type: ignore[attr-defined]
    except FileNotFoundError:
        return {}
    if "title" not in items:
        return {}
    return dict(zip(items[C.ITEM_ID], items["title"].fillna("").astype(str), strict=True))
