"""Training configuration: one TOML table per component, the one way components are built
from it, and per-scenario choices.

``[als]`` ``device = "cpu"``, ``[als.weights.shop]`` ``view = 1.0``, ``[weighted.weights.shop]``
``"als.click" = 2.0``, ... and ``[scenarios.shop]`` ``fallback = "popularity"`` (or ``false``
for none), ``blender``, ``scorers``, ``candidate_sources``, the objective
(``objective_events = {purchase = 1.0, cart = 0.2}``, ``objective_value = "ad_profile:bid"``),
``n_candidates``, and online adaptation (``exploration = 0.1``, ``adaptation_window =
5000`` lists; ``adapt = false`` freezes it), and the isolation of scorers when serving
(``scorer_budget_ms = 250``, ``breaker_failures = 5``, ``breaker_cooldown = 30`` s). A
table naming no installed component or scenario, a parameter the component does not take,
or a value it refuses is a ``ConfigError`` that names it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

Config = Mapping[str, Mapping[str, Any]]

#: The table of per-scenario choices, and what it may set.
SCENARIOS = "scenarios"
#: The scenario fields that change what serving and evaluation do (recorded in the bundle).
SCENARIO_SETTINGS = ("objective_events", "objective_value", "n_candidates", "exploration",
                     "adapt", "adaptation_window", "scorer_budget_ms", "breaker_failures",
                     "breaker_cooldown")
#: Numeric scenario settings: (lowest, highest) accepted.
NUMBERS = {"exploration": (0.0, 1.0), "scorer_budget_ms": (0.0, 60_000.0),
           "breaker_cooldown": (0.1, 86_400.0)}
SCENARIO_FIELDS = ("fallback", "blender", "scorers", "candidate_sources", *SCENARIO_SETTINGS)


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
        if name == SCENARIOS:
            continue
        if name not in known:
            raise ConfigError(f"config section [{name}] names no installed component; "
                              f"known: {', '.join(sorted(known))}")
        if not isinstance(section, Mapping):
            raise ConfigError(f"config section [{name}] must be a table of parameters")


def scenario_choices(config: Config, scenarios: Collection[str]) -> dict[str, dict[str, Any]]:
    """``[scenarios.NAME]`` tables as ``Scenario`` field values, checked."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in dict(config.get(SCENARIOS, {})).items():
        if name not in scenarios:
            raise ConfigError(f"config section [{SCENARIOS}.{name}] names no registered "
                              f"scenario; known: {', '.join(sorted(scenarios))}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"config section [{SCENARIOS}.{name}] must be a table")
        choices: dict[str, Any] = {}
        for key, value in table.items():
            where = f"[{SCENARIOS}.{name}] {key}"
            if key not in SCENARIO_FIELDS:
                raise ConfigError(f"{where}: not a setting; known: {', '.join(SCENARIO_FIELDS)}")
            if key in ("scorers", "candidate_sources"):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{where} must be a list of names")
                value = tuple(value)
            elif key in ("fallback", "objective_value") and value is False:
                value = None
            elif key == "objective_events":
                if not isinstance(value, Mapping) or not value or not all(
                        isinstance(g, int | float) and not isinstance(g, bool) and g >= 0
                        for g in value.values()):
                    raise ConfigError(f"{where} must be a table of event type = gain >= 0 "
                                      "(purchase = 1.0, click = 0.2)")
                value = {str(e): float(g) for e, g in value.items()}
            elif key in NUMBERS:
                low, high = NUMBERS[key]
                if not isinstance(value, int | float) or isinstance(value, bool) or \
                        not low <= value <= high:
                    raise ConfigError(f"{where} must be a number between {low:g} and "
                                      f"{high:g}")
                value = float(value)
            elif key == "adapt":
                if not isinstance(value, bool):
                    raise ConfigError(f"{where} must be true or false")
            elif key in ("n_candidates", "adaptation_window", "breaker_failures"):
                top = 100_000 if key == "adaptation_window" else None
                if not isinstance(value, int) or isinstance(value, bool) or value < 1 or \
                        (top is not None and value > top):
                    raise ConfigError(f"{where} must be an integer >= 1"
                                      + (f" and <= {top}" if top else ""))
            elif not isinstance(value, str):
                raise ConfigError(f"{where} must be a name" + (
                    " or false" if key in ("fallback", "objective_value") else ""))
            choices[key] = value
        out[name] = choices
    return out


def build(cls: Any, config: Config) -> Any:
    """A fresh ``cls`` from its table; a parameter it does not take (listing those it does) or
    a value it refuses is a ConfigError naming the table."""
    import inspect

    table = dict(config.get(cls.name, {}))
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        accepted = [n for n, p in params.items()
                    if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(table) - set(accepted))
        if unknown:
            raise ConfigError(f"invalid config for [{cls.name}]: no parameter "
                              f"{', '.join(map(repr, unknown))}; it takes "
                              f"{', '.join(accepted) or 'none'}")
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config for [{cls.name}]: {exc}") from None
