"""A plugin made for hybridrec's next major plugin API."""

from hybridrec import hookimpl
from hybridrec_eras.scorers import named

HYBRIDREC_PLUGIN_API = ">=2.0,<3"


@hookimpl
def register_scorers(register):
    register(named("future"))
