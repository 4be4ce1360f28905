"""The entry point: the ``llm`` scorer, the ``item_text_embedding`` feature view and the
``hybridrec llm`` commands. Importing this module is cheap: torch and transformers load when
a model is trained or items are encoded."""

from __future__ import annotations

from hybridrec import hookimpl

#: The versions of hybridrec's plugin API this plugin works with.
HYBRIDREC_PLUGIN_API = ">=1.0,<2"


@hookimpl
def register_scorers(register):
    from hybridrec_llm.scorer import LlmScorer

    register(LlmScorer)


@hookimpl
def register_feature_definitions(register, repo_path):
    from hybridrec_llm.embeddings import feature_view

    register(feature_view(repo_path))


@hookimpl
def register_commands(cli):
    from hybridrec_llm.commands import llm

    cli.add_command(llm)
