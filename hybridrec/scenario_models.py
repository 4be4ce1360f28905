"""What components that fit a model per preference scenario share (``ScenarioModels``):
which scenarios they apply to, their event weights, the validation slice they tune on, how
they describe themselves, and their arrays on disk for ``save`` and ``load`` (one file per
array, plain ``.npy`` for dense ones and SciPy's ``.npz`` for sparse ones, so that a bundle
holds no pickles)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

#: The seed of the random validation slice (``validation_slices`` with ``split="random"``).
VALIDATION_SEED = 7

__all__ = ["ScenarioModels", "load_arrays", "measurable_users", "save_arrays",
           "validation_slices"]


def save_arrays(directory: Path, arrays: Mapping[str, Any]) -> None:
    """Each of ``arrays`` to ``directory/NAME.npy``, or ``NAME.npz`` for a SciPy sparse
    matrix; ``directory`` is made (it must not exist yet)."""
    directory.mkdir()
    for name, array in arrays.items():
        if hasattr(array, "tocsr"):
            import scipy.sparse as sp

            sp.save_npz(directory / f"{name}.npz", array)
        else:
            np.save(directory / f"{name}.npy", array, allow_pickle=False)


def load_arrays(directory: Path, names: Iterable[str],
                mapped: Iterable[str] = ()) -> dict[str, Any]:
    """What ``save_arrays`` wrote under ``names``: sparse matrices back as CSR, the dense
    ones in ``mapped`` memory-mapped read-only (processes that load them share the pages)."""
    mapped = set(mapped)
    out: dict[str, Any] = {}
    for name in names:
        if (directory / f"{name}.npz").exists():
            import scipy.sparse as sp

            out[name] = sp.load_npz(directory / f"{name}.npz").tocsr()
        else:
            out[name] = np.load(directory / f"{name}.npy", allow_pickle=False,
                                mmap_mode="r" if name in mapped else None)
    return out


def validation_slices(events: Any, build: Callable[[Any], Any], fraction: float,
                      split: str = "temporal") -> tuple[Any, Any]:
    """About ``fraction`` of the events held out the way ``split`` holds out the test
    (``TrainingData.split``: the latest by time, a seeded random draw, or each user's
    latest), and the rest, each as the (users x items) sparse matrix ``build(events)``
    makes; the validation matrix keeps only the pairs new to the user (what a ranking of
    unseen items can find)."""
    from hybridrec.training.data import make_split

    held = make_split(events, split, fraction, seed=VALIDATION_SEED)
    train, valid = build(held.train), build(held.test)
    valid = (valid - valid.multiply(train > 0)).tocsr()
    valid.eliminate_zeros()
    return train, valid


def measurable_users(train: Any, valid: Any) -> np.ndarray:
    """The rows of two such matrices with training items and validation items."""
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    return users[np.diff(train.indptr)[users] > 0]


class ScenarioModels:
    """A mix-in for a component that fits one model per *preference* scenario (those ranked
    by what users act on, not by click-through rate) and keeps them in ``self.models``:
    ``model_class`` objects with ``user_ids``, ``item_ids``, ``params``, ``tuning`` and the
    ``arrays`` that ``save`` writes and ``load`` reads (with the config, the ``fit_info``
    and each model's parameters in ``meta_file``). Its config may list ``scenarios`` (then
    only those) and event ``weights`` per scenario. Put it before ``Scorer`` among the
    bases."""

    meta_file: ClassVar[str]
    arrays: ClassVar[tuple[str, ...]]
    model_class: ClassVar[type]
    #: Arrays loaded memory-mapped (large, read-only at serving time).
    mapped: ClassVar[tuple[str, ...]] = ()
    config: dict[str, Any]
    models: dict[str, Any]

    def supports(self, scenario: Any) -> bool:
        """Any scenario listed in config, else every one whose objective is not click-through
        rate (ad ranking is the CTR model's job) and that weighs some event above zero."""
        if self.config.get("scenarios"):
            return scenario.name in self.config["scenarios"]
        return "ctr" not in scenario.objective and any(
            w > 0 for w in scenario.event_weights.values())

    def weights_for(self, scenario: Any) -> dict[str, float]:
        """The event weights of ``scenario``: configured, else the scenario's own."""
        return dict((self.config.get("weights") or {}).get(scenario.name,
                                                           scenario.event_weights))

    def describe(self) -> dict[str, Any]:
        """The set parameters, ``fit_info`` if any, and per scenario the chosen parameters,
        the tuning grid's results and the model's size."""
        return {"config": {k: v for k, v in self.config.items() if v is not None},
                **getattr(self, "fit_info", {}),
                "scenarios": {name: {"params": m.params, "tuning": m.tuning,
                                     "users": len(m.user_ids), "items": len(m.item_ids)}
                              for name, m in self.models.items()}}

    def save(self, path: Path) -> None:
        meta = {"config": self.config, "fit_info": getattr(self, "fit_info", {}),
                "scenarios": {}}
        for name, m in self.models.items():
            save_arrays(path / name, {key: getattr(m, key) for key in self.arrays})
            meta["scenarios"][name] = {"params": m.params, "tuning": m.tuning}
        (path / self.meta_file).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: Path) -> Self:
        meta = json.loads((path / cls.meta_file).read_text())
        component = cls(**meta["config"])
        if meta.get("fit_info"):
            component.fit_info = meta["fit_info"]  # type: ignore[attr-defined]
        for name, info in meta["scenarios"].items():
            arrays = load_arrays(path / name, cls.arrays, cls.mapped)
            component.models[name] = cls.model_class(**arrays, params=info["params"],
                                                      tuning=info["tuning"])
        return component
