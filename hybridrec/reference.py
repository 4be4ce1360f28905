"""The plugin API reference in ``docs/plugins.md``, generated from the code.

Every hook of ``hybridrec.hookspecs`` and every public method and attribute of the
contracts a plugin implements, with exact signatures and the first line of their docstrings.
A test checks the guide's copy against this; ``python -m hybridrec.reference`` prints it.
"""

from __future__ import annotations

import inspect
from functools import cached_property
from typing import Any

#: The contracts a plugin subclasses, in the order the guide gives them.
CONTRACTS = ("Scorer", "CandidateSource", "Blender", "Scenario", "DerivedTable",
             "SyntheticScenario", "FeatureWriter", "SimilarItems", "Explainer")
#: The records a plugin reads and builds (exported by ``hybridrec``), after the contracts.
RECORDS = ("ScoreBatch", "RetrievalBatch", "TrainingData", "EventSequences", "Ragged",
           "IdIndex", "SyntheticWorld")
#: The modules whose classes' members the reference lists.
DOCUMENTED = ("hybridrec.contracts", "hybridrec.ids")
START, END = "<!-- reference: start (python -m hybridrec.reference) -->", "<!-- reference: end -->"


def _first_line(obj: Any) -> str:
    """The first paragraph of ``obj``'s own docstring (not one it inherits)."""
    doc = inspect.cleandoc(getattr(obj, "__doc__", None) or "")
    return " ".join(doc.split("\n\n")[0].split())


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def _signature(fn: Any) -> str:
    """``fn``'s signature as written in the source (annotations unquoted)."""
    signature = inspect.signature(fn)
    parts, star_done = [], False
    for param in signature.parameters.values():
        if param.kind is param.KEYWORD_ONLY and not star_done:
            parts.append("*")
        star_done |= param.kind in (param.VAR_POSITIONAL, param.KEYWORD_ONLY)
        prefix = "*" if param.kind is param.VAR_POSITIONAL else \
            "**" if param.kind is param.VAR_KEYWORD else ""
        text = prefix + param.name
        if param.annotation is not param.empty:
            text += f": {_annotation(param.annotation)}"
        if param.default is not param.empty:
            text += f" = {param.default!r}" if param.annotation is not param.empty \
                else f"={param.default!r}"
        parts.append(text)
    returned = "" if signature.return_annotation is signature.empty else \
        f" -> {_annotation(signature.return_annotation)}"
    return f"({', '.join(parts)}){returned}"


def _members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and class attributes a subclass sees (inherited from the contracts'
    private bases included), in definition order."""
    seen: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):
        if klass.__module__ not in DOCUMENTED:
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") or name == "__init__":
                seen[name] = value
    return list(seen.items())


def _attributes(cls: type) -> list[tuple[str, str, Any]]:
    """The public class attributes the contracts declare: (name, annotation, default or
    ``dataclasses.MISSING``)."""
    from dataclasses import MISSING

    out: dict[str, tuple[str, str, Any]] = {}
    for klass in reversed(cls.__mro__[:-1]):
        if klass.__module__ not in DOCUMENTED:
            continue
        for name, kind in vars(klass).get("__annotations__", {}).items():
            if not name.startswith("_"):
                out[name] = (name, _annotation(kind), getattr(cls, name, MISSING))
    return list(out.values())


def _describe(cls: type, name: str, value: Any) -> str | None:
    raw = value.__func__ if isinstance(value, classmethod | staticmethod) else value
    if isinstance(raw, property | cached_property):
        return f"- `{cls.__name__}.{name}` (property): {_first_line(raw)}".rstrip(": ")
    if callable(raw):
        kind = "classmethod " if isinstance(value, classmethod) else ""
        signature = _signature(raw)
        abstract = " (abstract)" if getattr(raw, "__isabstractmethod__", False) else ""
        text = _first_line(raw)
        return f"- {kind}`{cls.__name__}.{name}{signature}`{abstract}" + \
            (f": {text}" if text else "")
    return None


def plugin_reference() -> str:
    from dataclasses import MISSING, fields, is_dataclass

    import hybridrec
    from hybridrec import hookspecs

    lines = [START, "", "### Hooks", ""]
    for name in sorted(n for n in vars(hookspecs) if n.startswith("register_")):
        hook = getattr(hookspecs, name)
        lines.append(f"- `{name}{_signature(hook)}`: {_first_line(hook)}")
    for contract in (*CONTRACTS, *RECORDS):
        cls = getattr(hybridrec, contract)
        lines += ["", f"### `{contract}`", "", _first_line(cls), ""]
        if is_dataclass(cls):
            for f in fields(cls):
                default = f.default if f.default is not MISSING else (
                    f.default_factory() if f.default_factory is not MISSING else MISSING)
                lines.append(f"- `{contract}.{f.name}: {_annotation(f.type)}"
                             + (f" = {default!r}`" if default is not MISSING else "`"))
        else:
            lines += [f"- `{contract}.{name}: {kind}" + (f" = {value!r}`" if value is not
                                                          MISSING else "`")
                      for name, kind, value in _attributes(cls)]
        for name, value in _members(cls):
            if name == "__init__" and is_dataclass(cls):
                continue  # its fields, above
            described = _describe(cls, name, value)
            if described is not None:
                lines.append(described)
    return "\n".join([*lines, "", END])


if __name__ == "__main__":
    print(plugin_reference())
