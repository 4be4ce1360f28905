"""hybridrec-als: implicit ALS as a hybridrec scorer and candidate source."""

from hybridrec_als.device import choose_device, model_class
from hybridrec_als.model import AlsScorer

__all__ = ["AlsScorer", "choose_device", "model_class"]
