"""Properties of the code base itself."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 80


def test_no_function_in_the_core_is_longer_than_the_limit():
    long = []
    for path in sorted((ROOT / "hybridrec").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                                f"({lines} lines)")
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_the_core_does_not_import_its_builtin_plugins():
    """Built-ins are plugins like any other: the core reaches them through the registry."""
    offenders = []
    for path in sorted((ROOT / "hybridrec").rglob("*.py")):
        if "builtin" in path.parts or path.name == "plugins.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            if any(n.startswith("hybridrec.builtin") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders
