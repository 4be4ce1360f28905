"""Test helpers: a tiny randomly initialised BERT built from a config in code (no weights, no
download, seconds), and fast training settings. For this plugin's tests and for anyone
testing a component that reads ``item_text_embedding``."""

from __future__ import annotations

from pathlib import Path

#: Small, fast settings: tests check behaviour, not quality.
FAST = {"dim": 16, "hidden": 32, "history_length": 10, "negatives": 2, "epochs": 6,
        "patience": 6, "batch_size": 64, "device": "cpu", "threads": 1}


def tiny_bert(path: Path) -> Path:
    """Write a 2-layer BERT (hidden size 32) with a vocabulary of the synthetic world's words
    and its tokenizer into ``path``; usable as ``LlmScorer(encoder=str(path))``."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from hybridrec.data.synthetic import ADJECTIVES, ADVERTISERS, CATEGORY_WORDS, FILLER

    transformers.logging.disable_progress_bar()
    words = sorted({w for cats in CATEGORY_WORDS.values() for c, ws in cats.items()
                    for w in (c, *ws)} | set(ADJECTIVES) | set(FILLER)
                   | {a.lower() for a in ADVERTISERS})
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *words]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64,
                                 max_position_embeddings=128))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
