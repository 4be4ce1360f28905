"""hybridrec: a feature-store-backed hybrid recommender plugin framework.

Importing this package is cheap: nothing heavy (Feast, pandas, torch) is imported until used.
"""

__version__ = "0.1.0"

from hybridrec import _feast_import  # noqa: E402

_feast_import.install()  # Feast without import-time costs hybridrec never uses (see there)

from hybridrec.contracts import (  # noqa: E402  (light: numpy and stdlib only)
    TASKS,
    Blender,
    CandidateSource,
    DerivedTable,
    EventSequences,
    Explainer,
    FeatureWriter,
    Ragged,
    RetrievalBatch,
    Scenario,
    ScoreBatch,
    Scorer,
    SimilarItems,
    TrainingData,
)
from hybridrec.hookspecs import PLUGIN_API, hookimpl  # noqa: E402

__all__ = [
    "TASKS",
    "Blender",
    "CandidateSource",
    "DerivedTable",
    "EventSequences",
    "Explainer",
    "FeatureWriter",
    "PLUGIN_API",
    "Ragged",
    "RetrievalBatch",
    "Scenario",
    "ScoreBatch",
    "Scorer",
    "SimilarItems",
    "TrainingData",
    "__version__",
    "hookimpl",
]
