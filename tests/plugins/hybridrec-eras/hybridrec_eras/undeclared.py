"""A plugin that names no plugin API versions."""

from hybridrec import hookimpl
from hybridrec_eras.scorers import named


@hookimpl
def register_scorers(register):
    register(named("undeclared"))
