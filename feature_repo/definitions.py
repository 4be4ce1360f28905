"""Feast definitions: the core's and every installed plugin's, bound as module attributes.

``feast apply`` collects Feast objects from the modules of this directory; the objects come
from the ``register_feature_definitions`` hook, so a plugin's views appear here once the
plugin is installed, with no edit to this file. Data-source paths are made absolute against
this directory: run ``feast apply`` again after moving the repository.
"""

from pathlib import Path

from hybridrec.features import feast_definitions

globals().update(feast_definitions(Path(__file__).parent))
