"""``hybridrec plugins``: what is installed and what each plugin registered."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hybridrec.commands import fail, workspace

#: Registry kinds listed without ``--features`` (none of them imports Feast).
LIGHT_KINDS = ("scorers", "scenarios", "candidate_sources", "blenders", "derived_tables",
               "synthetic_scenarios")


def add_to(cli: click.Group) -> None:
    _add_new_plugin(cli)
    _add_install(cli)

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


def _add_new_plugin(cli: click.Group) -> None:
    from pathlib import Path

    from hybridrec.scaffold import KINDS

    @cli.command("new-plugin")
    @click.argument("name")
    @click.option("--kind", type=click.Choice(list(KINDS)), default="scorer",
                  show_default=True, help="What the plugin registers.")
    @click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
                  default=Path("."), show_default=True,
                  help="Where to write the package's folder, hybridrec-NAME.")
    def new_plugin(name: str, kind: str, parent: Path) -> None:
        """Write a pip-installable plugin package NAME that registers a working KIND, with
        tests that run hybridrec's conformance kit against it."""
        from hybridrec.scaffold import ScaffoldError, write_plugin

        try:
            written = write_plugin(name, kind, parent)
        except ScaffoldError as exc:
            fail(str(exc))
            return
        for path in written.files:
            click.echo(f"wrote {path}")
        click.echo(f"next: hybridrec install -e '{written.root}[test]' && "
                   f"(cd {written.root} && {sys.executable} -m pytest) && hybridrec plugins")


def _add_install(cli: click.Group) -> None:
    @cli.command()
    @click.argument("packages", nargs=-1)
    @click.option("-U", "--upgrade", is_flag=True, help="Upgrade packages already installed.")
    @click.option("-e", "--editable", multiple=True, metavar="PATH",
                  help="Install a local project in editable mode (repeatable).")
    @click.option("--force-reinstall", is_flag=True, help="Reinstall even if up to date.")
    @click.option("--no-cache-dir", is_flag=True, help="Do not use pip's cache.")
    def install(packages: tuple[str, ...], upgrade: bool, editable: tuple[str, ...],
                force_reinstall: bool, no_cache_dir: bool) -> None:
        """pip install PACKAGES into hybridrec's own environment, then show the plugins
        the change added or changed and what each registered."""
        if not packages and not editable:
            fail("name at least one package (or -e PATH)")
        options = [flag for on, flag in ((upgrade, "--upgrade"),
                                         (force_reinstall, "--force-reinstall"),
                                         (no_cache_dir, "--no-cache-dir")) if on]
        before = _listing()
        _pip("install", *options, *packages, *(a for p in editable for a in ("-e", p)))
        _show_changes(before, _listing())

    @cli.command()
    @click.argument("packages", nargs=-1, required=True)
    @click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.pass_context
    def uninstall(ctx: click.Context, packages: tuple[str, ...], yes: bool) -> None:
        """pip uninstall PACKAGES from hybridrec's own environment, then show the plugins
        removed, and say so if the current bundle needs one of them. A plugin's name
        (``hybridrec plugins``) stands for the distribution that installed it."""
        before = _listing()
        _pip("uninstall", *(["-y"] if yes else []), *_distributions(packages, before))
        after = _listing()
        _show_changes(before, after)
        gone = set(before) - set(after)
        if gone:
            _warn_bundle_needs(workspace(ctx), gone)


def _distributions(names: tuple[str, ...], plugins: dict[str, dict[str, Any]]) -> list[str]:
    """Each name as an installed distribution: itself, or the distribution of the plugin
    of that name; an error naming what is installed when it is neither."""
    from importlib import metadata

    out = []
    for name in names:
        try:
            metadata.distribution(name)
            out.append(name)
            continue
        except metadata.PackageNotFoundError:
            pass
        dist = (plugins.get(name) or {}).get("distribution")
        if dist is None:
            known = ", ".join(f"{p['distribution']} (plugin {n})" for n, p in plugins.items()
                              if p.get("distribution")) or "none"
            fail(f"nothing named {name!r} is installed; installed plugin packages: {known}")
        click.echo(f"plugin {name} was installed by the package {dist}: uninstalling {dist}")
        out.append(dist)
    return out


def _listing() -> dict[str, dict[str, Any]]:
    """The installed plugins as a fresh interpreter of this environment sees them (this
    process cannot see packages installed after it started): name -> plugin entry."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "hybridrec.cli", "plugins", "--json"],
                            capture_output=True, text=True)
    if result.returncode:
        fail(f"could not list the plugins: {result.stderr.strip()[-500:]}")
    return {p["name"]: p for p in json.loads(result.stdout) if not p["builtin"]}


def _pip(*args: str) -> None:
    import subprocess

    code = subprocess.call([sys.executable, "-m", "pip", *args])
    if code:
        fail(f"pip {args[0]} failed (exit {code}); the installed plugins are as they were "
             "unless pip said otherwise")


def _registrations(plugin: dict[str, Any]) -> str:
    return "; ".join(f"{kind}: {', '.join(names)}"
                     for kind, names in plugin["registered"].items()) or "nothing"


def _show_changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> None:
    changed = False
    for name, plugin in after.items():
        old = before.get(name)
        if old is not None and (old["version"], old["registered"]) == \
                (plugin["version"], plugin["registered"]):
            continue
        changed = True
        what = "added" if old is None else f"changed from {old['version']}"
        click.echo(f"plugin {name} {plugin['version']} ({plugin['distribution']}) {what}: "
                   f"{_registrations(plugin)}")
        for problem in plugin["problems"]:
            click.echo(f"    PROBLEM: {problem}")
    for name in sorted(set(before) - set(after)):
        changed = True
        plugin = before[name]
        click.echo(f"plugin {name} {plugin['version']} ({plugin['distribution']}) removed: "
                   f"{_registrations(plugin)}")
    if not changed:
        click.echo("no plugin was added, changed or removed")


def _warn_bundle_needs(ws: Any, gone: set[str]) -> None:
    """Say what to do when the current bundle needs a plugin just removed."""
    from hybridrec.bundle import CURRENT, MANIFEST, plugins_used

    manifest_path = ws.bundles / CURRENT / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return  # no current bundle: nothing needs it
    needed = {p: parts for p, parts in plugins_used(manifest).items() if p in gone}
    for plugin, parts in needed.items():
        click.echo(
            f"the current bundle {manifest.get('version')} needs plugin {plugin} (its "
            f"{', '.join(parts)}). Retrain without it (hybridrec train), or reinstall it. "
            "A server serving the bundle keeps it in memory and names the missing plugin in "
            "/readyz until it restarts; a server that starts now refuses the bundle.",
            err=True)
