"""One check for every place that takes a device name (CLI, training, checkpoint loading)."""
from __future__ import annotations

import torch

SUPPORTED = ("cpu", "cuda")


def check_device(name: str | torch.device) -> torch.device:
    """``name`` as a usable ``torch.device``; a one-line ``ValueError`` for anything pyfdc cannot run on."""
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"device {name!r} is not a torch device ({exc})") from None
    if dev.type not in SUPPORTED:
        raise ValueError(f"device {str(name)!r} is not supported: pyfdc runs on 'cpu' or 'cuda[:i]'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r}: CUDA is not available in this torch build/machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(name)!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    return dev
