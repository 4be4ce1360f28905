"""The one place that decides CPU or GPU for training and encoding.

``device`` is ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu`` or ``cuda`` (an
error when torch sees none). Whatever trains, the bundle holds NumPy arrays and serves on the
CPU without torch.
"""

from __future__ import annotations

from hybridrec.system import cpu_threads  # noqa: F401  (re-exported)

DEVICES = ("auto", "cpu", "cuda")


def choose_device(requested: str = "auto") -> str:
    import torch

    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but torch sees no CUDA device")
    return requested
