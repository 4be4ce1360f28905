"""Three shop scorers that behave while the file named by ``HYBRIDREC_FAULTY_SWITCH`` is
absent (so that a bundle trains with them) and misbehave while it exists: ``raising``
raises, ``sleepy`` sleeps far past any time budget, ``misshapen`` returns one score too few.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from hybridrec import Scorer, hookimpl

#: The versions of hybridrec's plugin API this plugin works with.
HYBRIDREC_PLUGIN_API = ">=1.0,<2"

#: How long ``sleepy`` sleeps when switched on.
SLEEP_SECONDS = 5.0


def switched_on():
    switch = os.environ.get("HYBRIDREC_FAULTY_SWITCH")
    return bool(switch) and Path(switch).exists()


class _Faulty(Scorer):
    tasks = ("click",)

    def supports(self, scenario):
        return scenario.name == "shop"

    def fit(self, data):
        """Nothing to learn."""

    def score(self, batch):
        if switched_on():
            return self.misbehave(batch)
        # some opinion, different per item: the length of its id
        return {"click": np.char.str_len(np.asarray(batch.item_ids, dtype=str)).astype(float)}

    def misbehave(self, batch):
        raise NotImplementedError

    def save(self, path):
        (path / "config.json").write_text(json.dumps(self.config))

    @classmethod
    def load(cls, path):
        return cls(**json.loads((path / "config.json").read_text()))


class RaisingScorer(_Faulty):
    name = "raising"

    def misbehave(self, batch):
        raise RuntimeError("the raising plugin failed on purpose")


class SleepyScorer(_Faulty):
    name = "sleepy"

    def misbehave(self, batch):
        time.sleep(SLEEP_SECONDS)
        return {"click": np.zeros(len(batch))}


class MisshapenScorer(_Faulty):
    name = "misshapen"

    def misbehave(self, batch):
        return {"click": np.zeros(max(len(batch) - 1, 0))}


@hookimpl
def register_scorers(register):
    register(RaisingScorer)
    register(SleepyScorer)
    register(MisshapenScorer)
