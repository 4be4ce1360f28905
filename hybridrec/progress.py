"""Progress bars for long work: on a terminal only, never written into logs or pipes."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


def progress_bar(iterable: Iterable[Any], desc: str, total: int | None = None,
                 enabled: bool = True) -> Iterable[Any]:
    from tqdm.auto import tqdm

    show = enabled and sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=not show, file=sys.stderr,
                leave=False)
