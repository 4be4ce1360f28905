"""The entry point: registers ALS as a scorer and as a candidate source.

Importing this module is cheap; implicit is imported when a model is fitted or loaded.
"""

from hybridrec import hookimpl

#: The versions of hybridrec's plugin API this plugin works with.
HYBRIDREC_PLUGIN_API = ">=1.0,<2"


@hookimpl
def register_scorers(register):
    from hybridrec_als.model import AlsScorer

    register(AlsScorer)


@hookimpl
def register_candidate_sources(register):
    from hybridrec_als.model import AlsScorer

    register(AlsScorer)
