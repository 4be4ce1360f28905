"""``hybridrec new-plugin``: a pip-installable plugin package to start from.

``write_plugin(name, kind, parent)`` writes ``parent/hybridrec-NAME/``: a ``pyproject.toml``
whose ``hybridrec`` entry point names the package, a package ``hybridrec_NAME`` registering a
working component of ``kind`` (declaring the plugin API versions it works with), tests that
run hybridrec's conformance kit against it, and a README. The templates are files under
``hybridrec/templates/plugin``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: What a new plugin registers, and the words its files use for it.
KINDS = {
    "scorer": ("scorer.py.tmpl", "test_scorer.py.tmpl", "Scorer",
               "scores candidates for the click task"),
    "blender": ("blender.py.tmpl", "test_blender.py.tmpl", "Blender",
                "blends the scorers' scores into one ranking score"),
    "scenario": ("scenario.py.tmpl", "test_scenario.py.tmpl", "World",
                 "a scenario with its synthetic data and a feature view"),
}
#: What the README says to do with each kind once installed.
USAGE = {
    "scorer": "Its scores appear in responses as `NAME.click`: the next `hybridrec train` "
              "fits it for every scenario it `supports`.",
    "blender": "Blend a scenario with it by configuration (`[scenarios.shop]` `blender = "
               "\"NAME\"` in hybridrec.toml), then `hybridrec train`.",
    "scenario": "`hybridrec data synthetic` now writes its items and events, `feast apply` "
                "adds its `NAME_item` view and `hybridrec materialize` loads it, `hybridrec "
                "train` trains it with every scorer that supports it, and `POST "
                "/v1/recommend` serves it (`{\"scenario\": \"NAME\", ...}`).",
}
#: What the kit checks of each kind, in the README's words.
CHECKS = {
    "scorer": "shapes, NaN handling, one request alone or in a batch, save and load",
    "blender": "shapes, NaN handling, one request alone or in a batch, save and load",
    "scenario": "its declaration, that its data's events, items and users agree, and that "
                "the same world gives the same data",
}
NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


class ScaffoldError(ValueError):
    """A name or folder the scaffold cannot use."""


@dataclass(frozen=True)
class Written:
    root: Path
    files: list[Path]
    values: dict[str, str]


def values_for(name: str, kind: str) -> dict[str, str]:
    """The templates' placeholders for plugin ``name`` of ``kind``."""
    from hybridrec import __version__
    from hybridrec.hookspecs import api_range

    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if not NAME.fullmatch(name) or len(name) > 40:
        raise ScaffoldError(f"plugin name {name!r} must start with a lowercase letter and "
                            "hold only lowercase letters and digits, in words joined by single "
                            "underscores (at most 40 characters)")
    _check_free(name, kind)
    _, _, suffix, does = KINDS[kind]
    title = "".join(part.title() for part in name.split("_"))
    return {"name": name, "kind": kind, "cls": title + suffix, "title": title,
            "module": f"hybridrec_{name}",
            "dist": f"hybridrec-{name.replace('_', '-')}", "api": api_range(),
            "core": _core_range(__version__), "usage": USAGE[kind].replace("NAME", name),
            "checks": CHECKS[kind],
            "summary": f"The {name} {kind} for hybridrec: {does}."}


def _check_free(name: str, kind: str) -> None:
    """A plugin whose component takes a name already registered would be reported and left
    out: refuse the name now."""
    from hybridrec.plugins import get_registry

    registry = get_registry()
    taken = registry.kind(f"{kind}s")
    if name in taken:
        raise ScaffoldError(f"a {kind} named {name!r} is already registered (by plugin "
                            f"{registry.owner(f'{kind}s', name)!r}); choose another name")


def write_plugin(name: str, kind: str, parent: Path) -> Written:
    values = values_for(name, kind)
    root = Path(parent) / values["dist"]
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another name or folder")
    source, test, _, _ = KINDS[kind]
    layout = {"pyproject.toml": "pyproject.toml.tmpl", "README.md": "README.md.tmpl",
              f"{values['module']}/__init__.py": source,
              f"tests/test_{name}.py": test}
    templates = resources.files("hybridrec") / "templates" / "plugin"
    files = []
    for relative, template in layout.items():
        text = string.Template((templates / template).read_text()).substitute(values)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files.append(path)
    return Written(root, files, values)


def _core_range(version: str) -> str:
    """The hybridrec versions a new plugin depends on: this one up to the next release that
    may break it (the next minor before 1.0, the next major after)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f">={major}.{minor},<{upper}"
