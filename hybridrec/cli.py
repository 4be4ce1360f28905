"""The ``hybridrec`` command line, built by ``make_cli``: the built-in commands (one module
each under ``hybridrec.commands``) and those plugins add through ``register_commands``.
``hybridrec --help`` imports neither Feast nor torch."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from hybridrec.commands import data, plugins, serving, train
from hybridrec.workspace import Workspace


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

    for module in (plugins, data, train, serving):
        module.add_to(cli)

    from hybridrec.plugins import get_registry

    get_registry().add_commands(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    try:
        make_cli()(args=argv, prog_name="hybridrec")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
