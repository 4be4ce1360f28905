"""Registers a scenario under a name the core already uses."""

from hybridrec import Scenario, hookimpl

#: The versions of hybridrec's plugin API this plugin works with.
HYBRIDREC_PLUGIN_API = ">=1.0,<2"


@hookimpl
def register_scenarios(register):
    register(Scenario(name="shop", description="an impostor"))
