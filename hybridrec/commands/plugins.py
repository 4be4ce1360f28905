"""``hybridrec plugins``: what is installed and what each plugin registered."""

from __future__ import annotations

import json

import click

from hybridrec.commands import fail

#: Registry kinds listed without ``--features`` (none of them imports Feast).
LIGHT_KINDS = ("scorers", "scenarios", "candidate_sources", "blenders")


def add_to(cli: click.Group) -> None:
    @cli.command()
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @click.option("--features", is_flag=True,
                  help="Also run the feature-definition hooks (imports Feast: seconds).")
    @click.option("--strict", is_flag=True,
                  help="Run every hook and fail if any plugin has a problem.")
    def plugins(as_json: bool, features: bool, strict: bool) -> None:
        """List plugins, their versions and what each registered."""
        from hybridrec.plugins import KINDS, PluginError, get_registry

        kinds = tuple(KINDS) if features or strict else LIGHT_KINDS
        try:
            registry = get_registry(strict=strict)
            info = registry.as_dict(kinds)
        except PluginError as exc:
            fail(f"plugin problems (strict mode): {exc}")
            return
        if as_json:
            click.echo(json.dumps(info, indent=2))
            return
        from hybridrec import PLUGIN_API, __version__

        click.echo(f"hybridrec {__version__}, plugin API {PLUGIN_API}")
        for plugin in info:
            kind = "built-in" if plugin["builtin"] else "installed"
            click.echo(f"{plugin['name']} {plugin['version'] or '?'} ({kind})")
            for what, names in plugin["registered"].items():
                click.echo(f"    {what}: {', '.join(names)}")
            for problem in plugin["problems"]:
                click.echo(f"    PROBLEM: {problem}")
        if not features and not strict:
            click.echo("(feature definitions not listed: add --features)", err=True)
        problems = [p for plugin in info for p in plugin["problems"]]
        if problems:
            click.echo(f"{len(problems)} plugin problem(s); see above.", err=True)
