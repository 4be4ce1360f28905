"""``hybridrec llm``: the plugin's commands."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def llm() -> None:
    """The transformer scorer (hybridrec-llm)."""


@llm.command()
@click.option("--encoder", default=None,
              help="A transformers model directory, when no bundle has an llm scorer yet; "
                   "default: the current bundle's encoder, else all-MiniLM-L6-v2.")
@click.option("--all", "everything", is_flag=True, help="Re-embed every item.")
@click.pass_context
def embed(ctx: click.Context, encoder: str | None, everything: bool) -> None:
    """Embed new or changed items' text and push the embeddings online.

    Reads the item table, encodes the items whose text (or encoder) changed since they were
    last embedded, writes them to the item_text_embedding view's Parquet file and the online
    store. A running server adds new items to its catalogue at its next refresh and the llm
    scorer ranks them by their text, before any retraining.
    """
    from hybridrec import columns as C
    from hybridrec.commands import fail, message_of, workspace
    from hybridrec.data.tables import read_table
    from hybridrec.features import open_store
    from hybridrec_llm import embeddings as E
    from hybridrec_llm.encoder import embed as encode

    ws = workspace(ctx)
    try:
        items = read_table(ws.data_dir, C.ITEMS_FILE)
        scorer = _current_scorer(ws, encoder)
        model = scorer.load_encoder()
        if scorer.models:
            items = items[items[C.SCENARIO].isin(list(scorer.models))]
        store = open_store(ws.feature_repo)
        texts = E.item_texts(items)
        hashes = E.text_hashes(texts, model.identity())
        ids = items[C.ITEM_ID].to_numpy(str)
        import numpy as np

        todo = (np.arange(len(ids)) if everything else
                np.flatnonzero(E.stale(Path(store.repo_path), ids, hashes)))
        written = 0
        if len(todo):
            vectors = encode(model, [texts[i] for i in todo], hashes[todo])
            written = E.write(store, ids[todo], vectors, hashes[todo], model.identity())
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(message_of(exc))
        return
    noun = "item" if written == 1 else "items"
    click.echo(f"{written} {noun} embedded and pushed online, {len(ids) - written} up to date "
               f"(encoder {model.identity()}; items with text only)")


def _current_scorer(ws, encoder: str | None):
    """The current bundle's llm scorer (its encoder, LoRA-merged or not, and scenarios), or a
    fresh one with ``encoder``."""
    from hybridrec.bundle import Bundle, BundleError
    from hybridrec_llm.scorer import LlmScorer

    try:
        bundle = Bundle.load(ws.bundles)
    except (BundleError, FileNotFoundError):
        bundle = None
    current = bundle.components.get("llm") if bundle is not None else None
    if not isinstance(current, LlmScorer):
        return LlmScorer(encoder=encoder)
    if encoder is not None:
        wanted = LlmScorer(encoder=encoder).load_encoder().identity()
        if wanted != current.fit_info.get("encoder_id"):
            raise ValueError(
                f"bundle {bundle.version} was trained with encoder "
                f"{current.fit_info.get('encoder_id')}, not {wanted}: embeddings from another "
                "encoder live in another space and its llm scorer would ignore them; run "
                "'hybridrec llm embed' without --encoder, or retrain with the new encoder")
    return current
