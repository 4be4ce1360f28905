"""Docs that tests check: the plugin guide's example is the real test plugin, its reference
is the one generated from the code, every hook is listed with its signature, the README
links the guide, and the documented commands exist."""

import inspect
import re
from pathlib import Path

from hybridrec import hookspecs
from hybridrec.cli import make_cli
from hybridrec.reference import END, START, plugin_reference

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
GUIDE = (ROOT / "docs" / "plugins.md").read_text()


def test_guide_plugin_example_is_the_tested_plugin():
    source = (ROOT / "tests/plugins/hybridrec-hello/hybridrec_hello/__init__.py").read_text()
    assert source.strip() in GUIDE


def test_guide_scenario_example_is_the_news_plugin():
    """The worked scenario's entry point is the real file tests/test_news_plugin.py installs,
    and every module the guide walks through exists."""
    news = ROOT / "plugins" / "hybridrec-news"
    assert (news / "hybridrec_news" / "plugin.py").read_text().strip() in GUIDE
    section = GUIDE[GUIDE.index("## A whole scenario"):GUIDE.index("## Versions")]
    for module in re.findall(r"\(`(\w+\.py)`\)", section):
        assert list(news.rglob(module)), f"the guide names {module}, not in hybridrec-news"


def test_guide_reference_is_generated_from_the_code():
    documented = GUIDE[GUIDE.index(START):GUIDE.index(END) + len(END)]
    assert documented == plugin_reference(), (
        "docs/plugins.md's reference is out of date: paste in "
        "'python -m hybridrec.reference'")


def test_every_hook_is_documented_with_its_signature():
    hooks = [name for name in dir(hookspecs) if name.startswith("register_")]
    assert hooks
    for name in hooks:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})`" in GUIDE, f"{name}({params}) missing from the guide"


def test_readme_links_the_guide_and_its_commands_agree():
    assert "(docs/plugins.md)" in README
    for text in (README, GUIDE):
        assert "hybridrec new-plugin recency --kind scorer" in text
    assert 'HYBRIDREC_PLUGIN_API = ">=1.0,<2"' in README
    assert f'HYBRIDREC_PLUGIN_API = ">={hookspecs.PLUGIN_API},<' in GUIDE


def test_documented_commands_exist():
    cli = make_cli()
    for text in (README, GUIDE):
        documented = set(re.findall(r"`hybridrec (\w[\w-]*)", text))
        documented |= set(re.findall(r"^hybridrec (\w[\w-]*)", text, re.M))
        assert documented <= set(cli.commands), documented - set(cli.commands)
    assert "make demo" in README and "make test" in README
