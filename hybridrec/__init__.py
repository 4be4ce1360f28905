"""hybridrec: a feature-store-backed hybrid recommender plugin framework.

Importing this package is cheap: nothing heavy (Feast, pandas, torch) is imported until used.
"""

__version__ = "0.2.0"

from hybridrec import _feast_import  # noqa: E402

_feast_import.install()  # Feast without import-time costs hybridrec never uses (see there)

from hybridrec import columns  # noqa: E402  (the data's column names)
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
    SyntheticScenario,
    SyntheticWorld,
    TrainingData,
)
from hybridrec.hookspecs import PLUGIN_API, hookimpl  # noqa: E402
from hybridrec.ids import IdIndex  # noqa: E402
from hybridrec.ranking import group_standardise, weighted_z_terms  # noqa: E402

__all__ = [
    "TASKS",
    "Blender",
    "CandidateSource",
    "DerivedTable",
    "EventSequences",
    "Explainer",
    "FeatureWriter",
    "IdIndex",
    "PLUGIN_API",
    "Ragged",
    "RetrievalBatch",
    "Scenario",
    "ScoreBatch",
    "Scorer",
    "SimilarItems",
    "SyntheticScenario",
    "SyntheticWorld",
    "TrainingData",
    "__version__",
    "columns",
    "group_standardise",
    "hookimpl",
    "weighted_z_terms",
]
