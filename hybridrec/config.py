"""Component configuration: one TOML table per component, and the one way components are
built from it.

``[als]`` ``device = "cpu"``, ``[als.weights.shop]`` ``view = 1.0``, ``[weighted.weights.shop]``
``"als.click" = 2.0``, ... A table naming no installed component, a parameter the component
does not take, or a value it refuses is a ``ConfigError`` that names it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

Config = Mapping[str, Mapping[str, Any]]


class ConfigError(ValueError):
    """The configuration file or one of its tables is wrong."""


def load_config(path: Path | None) -> dict[str, dict[str, Any]]:
    """The tables of a TOML file (``{}`` when no file is given)."""
    import tomllib

    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None


def check_sections(config: Config, known: Collection[str]) -> None:
    """Every table must name an installed component and hold parameters."""
    for name, section in config.items():
        if name not in known:
            raise ConfigError(f"config section [{name}] names no installed component; "
                              f"known: {', '.join(sorted(known))}")
        if not isinstance(section, Mapping):
            raise ConfigError(f"config section [{name}] must be a table of parameters")


def build(cls: Any, config: Config) -> Any:
    """A fresh ``cls`` from its table; a parameter it does not take or a value it refuses is a
    ConfigError naming the table."""
    try:
        return cls(**dict(config.get(cls.name, {})))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config for [{cls.name}]: {exc}") from None
