"""The entry point: the ``news`` scenario, the ``freshness`` scorer, the ``news_article``
table and Feast view, and the news part of the synthetic world. Importing it is cheap: the
modules below load when the registry asks for what they register."""

from __future__ import annotations

from hybridrec import hookimpl

#: The versions of hybridrec's plugin API this plugin works with (1.1 added synthetic
#: scenarios).
HYBRIDREC_PLUGIN_API = ">=1.1,<2"


@hookimpl
def register_scenarios(register):
    from hybridrec_news.scenario import NEWS

    register(NEWS)


@hookimpl
def register_scorers(register):
    from hybridrec_news.scorer import Freshness

    register(Freshness)


@hookimpl
def register_candidate_sources(register):
    from hybridrec_news.scorer import Freshness

    register(Freshness)


@hookimpl
def register_derived_tables(register):
    from hybridrec_news.articles import NewsArticles

    register(NewsArticles)


@hookimpl
def register_feature_definitions(register, repo_path):
    from hybridrec_news.articles import feature_view

    register(feature_view(repo_path))


@hookimpl
def register_synthetic_scenarios(register):
    from hybridrec_news.world import NewsWorld

    register(NewsWorld)
