"""Docs that tests check: the README's plugin is the real test plugin, every hook is listed
with its signature, and the documented commands exist."""

import inspect
import re
from pathlib import Path

from hybridrec import hookspecs
from hybridrec.cli import make_cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_plugin_example_is_the_tested_plugin():
    source = (ROOT / "tests/plugins/hybridrec-hello/hybridrec_hello/__init__.py").read_text()
    assert source.strip() in README


def test_every_hook_is_documented_with_its_signature():
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert hooks
    for name in hooks:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})`" in README, f"{name}({params}) missing from README"


def test_documented_commands_exist():
    cli = make_cli()
    documented = set(re.findall(r"`hybridrec (\w[\w-]*)", README))
    assert documented <= set(cli.commands), documented - set(cli.commands)
    assert "make demo" in README and "make test" in README
