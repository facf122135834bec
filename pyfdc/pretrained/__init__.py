"""Checkpoints shipped inside the package (no download at run time).

``ecg_small_freq``: the ``small`` half-spectrum model trained on the embedded ECG's train split on a
2-core CPU (900 epochs, ~24 min) with EMA weights and the zero pad pinned (``pyfdc.pinning``),
``pyfdc train --dataset ecg --config small --domain freq --pinning auto --ema 0.999 --epochs 900 --warmup-epochs 90 --seed 0``
(see its ``config.json`` and ``benchmarks/RESULTS.md``). Used by ``pyfdc demo`` so the demo shows a
trained model in about a minute.
"""
from __future__ import annotations

from pathlib import Path

PRETRAINED: dict[str, Path] = {"ecg_small_freq": Path(__file__).with_name("ecg_small_freq")}


def pretrained_path(name: str = "ecg_small_freq") -> Path:
    """Folder of a shipped checkpoint (load it with :func:`pyfdc.checkpoint.load_checkpoint`)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained checkpoint {name!r}; available: {sorted(PRETRAINED)}")
    path = PRETRAINED[name]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"pretrained checkpoint {name!r} is missing from the installation ({path})")
    return path
