"""Loads the compiled extension (``pyfdc._C``) once and says, per device type, what runs.

``PYFDC_FORCE_REFERENCE=1`` forces the pure-PyTorch twins. Without the extension (e.g. a source
checkout on ``PYTHONPATH``) pyfdc warns once and runs the twins. The answer per device type is
fixed at import, so the per-call test is one dict lookup (and traces cleanly under torch.compile).
"""
from __future__ import annotations

import importlib
import os
import warnings

import torch

OPS = ("kv_scatter", "select_tokens", "select_budget", "error_feedback")

FORCE_REFERENCE = os.environ.get("PYFDC_FORCE_REFERENCE", "").strip().lower() not in ("", "0", "false", "no")


def _load() -> tuple[bool, str]:
    if FORCE_REFERENCE:
        return False, "PYFDC_FORCE_REFERENCE is set"
    try:
        importlib.import_module("pyfdc._C")
    except ImportError as exc:
        reason = f"the compiled extension pyfdc._C could not be imported ({exc})"
        warnings.warn(
            f"pyfdc: {reason}; running the pure-PyTorch reference ops, which are slower. "
            "Install the package (`pip install .`) to build the compiled ops.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False, reason
    return True, ""


LOADED, REASON = _load()


def _has_kernel(op: str, dispatch_key: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"pyfdc::{op}", dispatch_key)
    except RuntimeError:  # an extension built from older sources lacks the op altogether
        return False


def _has_kernels(dispatch_key: str) -> bool:
    return all(_has_kernel(op, dispatch_key) for op in OPS)


# device type -> whether torch.ops.pyfdc has kernels for it ("meta": the registered fake kernels).
COMPILED: dict[str, bool] = {
    "cpu": LOADED and _has_kernels("CPU"),
    "cuda": LOADED and _has_kernels("CUDA"),
    "meta": LOADED,
}

if LOADED and not COMPILED["cuda"] and torch.cuda.is_available():
    warnings.warn(
        "pyfdc: the compiled extension has no CUDA kernels (it was built against a CPU-only torch or "
        "without a CUDA compiler); CUDA tensors run the reference ops. See the README to build with CUDA.",
        RuntimeWarning,
        stacklevel=3,
    )


def use_compiled(device_type: str) -> bool:
    """Whether tensors on ``device_type`` ("cpu", "cuda", ...) go to ``torch.ops.pyfdc``."""
    return COMPILED.get(device_type, False)


def backend(device: str | torch.device = "cpu") -> str:
    """Which implementation runs pyfdc's ops for tensors on ``device``.

    Returns ``"cpp"`` (compiled CPU kernels), ``"cuda"`` (compiled CUDA kernels) or
    ``"reference"`` (the pure-PyTorch twins in ``pyfdc.ops.reference``).
    """
    dev = torch.device(device)
    if not use_compiled(dev.type):
        return "reference"
    return "cuda" if dev.type == "cuda" else "cpp"
