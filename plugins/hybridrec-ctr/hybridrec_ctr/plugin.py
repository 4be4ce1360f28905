"""The entry point: the ``ctr`` scorer, the ``user_category_clicks`` daily snapshots and the
Feast view that serves them. Importing this module is cheap: LightGBM loads when a model is
trained or loaded."""

from __future__ import annotations

from hybridrec import hookimpl

#: The versions of hybridrec's plugin API this plugin works with.
HYBRIDREC_PLUGIN_API = ">=1.0,<2"


@hookimpl
def register_scorers(register):
    from hybridrec_ctr.scorer import CtrScorer

    register(CtrScorer)


@hookimpl
def register_derived_tables(register):
    from hybridrec_ctr.history import UserCategoryClicks

    register(UserCategoryClicks)


@hookimpl
def register_feature_definitions(register, repo_path):
    from hybridrec_ctr.history import feature_view

    register(feature_view(repo_path))
