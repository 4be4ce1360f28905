"""hybridrec-llm: a transformer-encoder multi-task scorer.

Importing this package is light (NumPy only): torch and transformers are imported when a
model is trained or items are encoded, never to serve.
"""

from hybridrec_llm.scorer import LlmScorer

__all__ = ["LlmScorer"]
