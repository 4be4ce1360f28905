"""A third-party scorer: cheaper items first, wherever items have a price."""

import json

import numpy as np

from hybridrec import Scorer, hookimpl

#: The versions of hybridrec's plugin API this plugin works with.
HYBRIDREC_PLUGIN_API = ">=1.0,<2"


class CheapestScorer(Scorer):
    name = "cheapest"
    tasks = ("click",)
    feature_refs = ("item_profile:price",)

    def supports(self, scenario):
        return scenario.name == "shop"

    def fit(self, data):
        """Nothing to learn: the price is read from the item features at request time."""

    def score(self, batch):
        price = np.asarray(batch.item_features.get("item_profile__price",
                                                   np.full(len(batch), None)), dtype=float)
        return {"click": -np.log1p(price)}  # NaN (no price, unknown item) stays NaN

    def save(self, path):
        (path / "config.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, path):
        return cls(**json.loads((path / "config.json").read_text()))


@hookimpl
def register_scorers(register):
    register(CheapestScorer)


@hookimpl
def register_feature_definitions(register):
    from feast import Entity

    register(Entity(name="merchant", join_keys=["merchant_id"]))
