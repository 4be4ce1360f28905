"""The one place that decides CPU or GPU, and how many threads.

``device`` is ``auto`` (the GPU when implicit was built with CUDA and sees a device, else the
CPU), ``cpu`` or ``cuda`` (an error when CUDA is not there). Factors are always saved as CPU
NumPy arrays, so a bundle trained on either device serves on either.
"""

from __future__ import annotations

from typing import Any

from hybridrec.system import cpu_threads  # noqa: F401  (re-exported)

DEVICES = ("auto", "cpu", "cuda")


def has_cuda() -> bool:
    import implicit.gpu

    return bool(implicit.gpu.HAS_CUDA)


def choose_device(requested: str = "auto") -> str:
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if requested == "auto":
        return "cuda" if has_cuda() else "cpu"
    if requested == "cuda" and not has_cuda():
        raise RuntimeError("device 'cuda' was requested but implicit reports no CUDA support "
                           "(install implicit with CUDA and check the GPU is visible)")
    return requested


def model_class(device: str) -> type:
    """implicit's ALS class for a resolved device (``cpu`` or ``cuda``)."""
    if device == "cuda":
        import implicit.gpu.als

        return implicit.gpu.als.AlternatingLeastSquares
    import implicit.cpu.als

    return implicit.cpu.als.AlternatingLeastSquares


def make_model(device: str, threads: int, **params: Any) -> Any:
    cls = model_class(device)
    if device == "cuda":
        return cls(**params)
    return cls(num_threads=threads, **params)


def single_threaded_blas() -> Any:
    """BLAS limited to one thread while implicit runs its own threads (no oversubscription)."""
    import implicit.cpu.als  # noqa: F401  (loads the BLAS libraries, so the limit reaches them)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
