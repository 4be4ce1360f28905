"""The built-in commands of the ``hybridrec`` CLI, one module per concern; ``hybridrec.cli``
assembles them. Heavy libraries are imported inside the commands that use them, and only
commands that read features import Feast."""

from __future__ import annotations

from typing import Any, NoReturn

import click

from hybridrec.workspace import Workspace


def workspace(ctx: click.Context) -> Workspace:
    return ctx.find_object(Workspace) or Workspace.from_env()


def fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def message_of(exc: BaseException) -> str:
    """An exception's message (a KeyError's str() is the repr of its message)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "-" if v != v else f"{v:.4f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c)
              for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)
