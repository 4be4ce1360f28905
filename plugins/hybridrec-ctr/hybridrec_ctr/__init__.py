"""hybridrec-ctr: a calibrated, explainable LightGBM click-through-rate scorer.

Importing this package is light: LightGBM loads when a model is trained or loaded, pandas
when features are built.
"""

from hybridrec_ctr.scorer import CtrScorer

__all__ = ["CtrScorer"]
