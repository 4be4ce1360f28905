"""Registers a scenario under a name the core already uses."""

from hybridrec import Scenario, hookimpl


@hookimpl
def register_scenarios(register):
    register(Scenario(name="shop", description="an impostor"))
