"""Wall time of the CLI's commands that answer at once, from a new process each time.

The first call of each (Python's bytecode caches may be cold) and the median of the next
five. `recommend` needs a trained workspace (run `make demo` first) and is skipped otherwise.

    .venv/bin/python benchmarks/cli_startup.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HYBRIDREC = str(Path(sys.executable).parent / "hybridrec")

COMMANDS = [
    ["--help"],
    ["plugins"],
    ["plugins", "--features"],
    ["recommend", "u00042", "--scenario", "shop", "-k", "5"],
]


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([HYBRIDREC, *args], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "FEAST_USAGE": "False"})
    return time.perf_counter() - start


def main() -> None:
    print(f"{'command':<48}{'first s':>9}{'median s':>10}")
    for args in COMMANDS:
        if args[0] == "recommend" and not (ROOT / "bundles" / "current").exists():
            print(f"{'hybridrec ' + ' '.join(args):<48}  skipped: no trained bundle")
            continue
        first = timed(args)
        rest = statistics.median(timed(args) for _ in range(5))
        print(f"{'hybridrec ' + ' '.join(args):<48}{first:>9.2f}{rest:>10.2f}")
    print(f"\ncommand: {Path(sys.executable).name} benchmarks/cli_startup.py")


if __name__ == "__main__":
    main()
