"""Checkpoints shipped inside the package (no download at run time).

``ecg_small_freq``: the ``small`` half-spectrum model trained on the embedded ECG's train split on one
core of a 2-core CPU (2,700 epochs, ~50 min; best validation epoch 2,364) with EMA weights (0.9995) and
the zero pad pinned (``pyfdc.core.pinning``),
``pyfdc train --dataset ecg --config small --domain freq --pinning auto --ema 0.9995 --epochs 2700 --warmup-epochs 90 --max-minutes 80 --seed 0``
(see its ``config.json`` and ``benchmarks/RESULTS.md``). Used by ``pyfdc demo`` so the demo shows a
trained model in about a minute. (Until 2026-12-02 it was the 900-epoch model of the same recipe with
EMA 0.999; the earlier speed-quality fronts in RESULTS_HISTORY.md were measured on that one,
``git show d37c7a7:pyfdc/pretrained/ecg_small_freq/model.safetensors``.)

``ecg_small_time``: the time-domain baseline trained with the same recipe and the same wall-clock budget
(one core, 50 min: 1,389 epochs of 187 time tokens),
``pyfdc train --dataset ecg --config small --domain time --pinning auto --ema 0.9995 --epochs 2700 --warmup-epochs 90 --max-minutes 50 --seed 0``.
With the support clip it is the closest to real beats on validation (``benchmarks/RESULTS_HISTORY.md``).

``ecg_paper_freq``: the paper's configuration (10 layers, d 72, FFN 2048; 3.2M parameters) with the same
recipe (EMA 0.999), trained 620 epochs on one core (~3 h in two parts: 361 epochs in 135 min, then resumed
with ``--epochs 620 --resume``), float16 weights (6.4 MB). At this CPU budget it is *worse* than the small
models (C2ST vs validation 0.90 vs 0.71; ``benchmarks/RESULTS_HISTORY.md``): shipped for the paper's network size
(E2-CRF cost studies), not for sample quality.

All carry their fit split's range (``bounds``), so samplers keep samples inside it (``pyfdc.core.support``).
"""
from __future__ import annotations

from pathlib import Path

PRETRAINED: dict[str, Path] = {name: Path(__file__).with_name(name) for name in ("ecg_small_freq", "ecg_small_time", "ecg_paper_freq")}


def pretrained_path(name: str = "ecg_small_freq") -> Path:
    """Folder of a shipped checkpoint (load it with :func:`pyfdc.core.checkpoint.load_checkpoint`)."""
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained checkpoint {name!r}; available: {sorted(PRETRAINED)}")
    path = PRETRAINED[name]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"pretrained checkpoint {name!r} is missing from the installation ({path})")
    return path
