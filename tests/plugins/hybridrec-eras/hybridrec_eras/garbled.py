"""A plugin whose plugin API declaration is no version range."""

from hybridrec import hookimpl
from hybridrec_eras.scorers import named

HYBRIDREC_PLUGIN_API = "the second one"


@hookimpl
def register_scorers(register):
    register(named("garbled"))
