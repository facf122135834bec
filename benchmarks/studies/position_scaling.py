"""Issue 24: per-position standardisation (``pyfdc train --scaling position``) against the recipe's per-channel one.

    python benchmarks/studies/position_scaling.py --run runs/pos --base runs/fvb --datasets gunpoint sines [--held-out]

Tried in stop 38 and removed: ``--scaling position`` exists at commit 163c502 only; the position arm's models
(``runs/pos``) were trained and sampled there. Results: ``benchmarks/results/stop38/position_scaling*.md``.

Per dataset: the baseline is ``BASE/D/freq`` (the recipe, per-channel scaling) at its last epoch's EMA, whose
128 EM-1000 series (seed 0) ``final_vs_best.py`` saved beside it (``em1000_final.npy``, or ``em1000_best.npy``
when the last epoch was the best); they were decoded before the exact structure existed, so it is applied to
them here as decoding would (band limit, series norm, grid; pins restored; clamp). The other arm is
``RUN/D/freq`` (same recipe and budget, ``--scaling position``; its checkpoint is the last epoch), which draws
its own set with the same seed and sampler (saved as ``RUN/D/em1000.npy``). Both are scored on the train split
only for the decision: C2ST against the fit series (mean of 3 subsamples), roughness (mean |Δx|) against the
validation series, over the whole series and over its first and last tenth (where the recipe's samples wander:
GunPoint's resting hand, Sines' start), and the copy check of ``final_vs_best.py``; ``--held-out`` prints the
held-out C2ST (5 subsamples) after.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from final_vs_best import _nn_ratio, c2st_cells, held_out_cell, print_header, study_parser, train_splits  # noqa: E402
from suite_data import znorm_like  # noqa: E402


def _baseline(folder: Path, n: int, fit: np.ndarray) -> np.ndarray:
    """The baseline run's saved last-epoch EM-1000 series, decoded as today's checkpoint would decode them
    (its exact structure fitted on the fit split ``fit`` when the checkpoint predates it)."""
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.core.exact_structure import ExactStructure

    model = load_checkpoint(folder / "freq")
    if model.exact is None:
        model.exact = ExactStructure.fit(fit)
    for arm in ("final", "best"):  # "best" holds the last epoch's samples when the last epoch was the best
        path = folder / f"em1000_{arm}.npy"
        if path.is_file():
            x = torch.as_tensor(np.load(path)[:n], dtype=torch.float64)
            break
    else:
        raise FileNotFoundError(f"no em1000_final.npy / em1000_best.npy in {folder} (run final_vs_best.py first)")
    if model.exact is not None:
        x = model._restore_pins(model.exact.apply(x))
    if model.bounds is not None:
        x = model.bounds.clamp(x)
    return x.numpy()


def _draw(folder: Path, n: int) -> np.ndarray:
    """``n`` EM-1000 series (seed 0) of the run's checkpoint, cached as ``em1000.npy``."""
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.sampling.sampler import Sampler

    out = folder / "em1000.npy"
    if out.is_file() and len(np.load(out)) >= n:
        return np.load(out)[:n]
    model = load_checkpoint(folder / "freq")
    x = Sampler(model, "em").sample(n, steps=1000, batch_size=64, seed=0, progress=False).numpy()
    np.save(out, x)
    return x


def _rough(a: np.ndarray, part: slice = slice(None)) -> float:
    return float(np.abs(np.diff(a[:, part], axis=1)).mean())


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--base", required=True, type=Path, help="the per-channel suite run to compare with")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print_header(["dataset", "scaling", "roughness gen / val (whole; first, last tenth)",
                  "C2ST vs fit (hgb / linear, 3 subsamples)", "nearest-fit distance, gen / val"], args.held_out)
    for name in args.datasets:
        ds, fit, val = train_splits(name)
        tenth = max(2, fit.shape[1] // 10)
        for arm, raw in (("channel", _baseline(args.base / name, args.num_samples, fit)),
                         ("position", _draw(args.run / name, args.num_samples))):
            x = znorm_like(ds, raw)
            ratios = [f"{_rough(x, p) / _rough(val, p) - 1:+.0%}" if _rough(val, p) > 0 else "flat"  # a zero pad
                      for p in (slice(None), slice(0, tenth), slice(-tenth, None))]
            rough = f"{_rough(x):.4f} / {_rough(val):.4f} ({ratios[0]}; {ratios[1]}, {ratios[2]})"
            # column order of the stop-38 tables: roughness, C2ST vs fit, copy check, held-out
            cells = c2st_cells(x, fit, ds.test, False)
            print(f"| {name} | {arm} | {rough} |{cells} {_nn_ratio(x, fit, val):.2f} |"
                  + held_out_cell(x, ds.test, args.held_out), flush=True)


if __name__ == "__main__":
    main()
