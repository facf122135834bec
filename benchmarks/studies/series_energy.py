"""Issue 24: how the per-series energy of saved sample sets compares with the data's (mode weights, not smoothness).

    python benchmarks/studies/series_energy.py --run runs/fvb --datasets basicmotions [--raw-weights]

For each dataset of a suite run: the 10/50/90% quantiles over series of each series' sd (mean over channels)
and mean |Δx|, for the train split's fit and validation series, the held-out split, and every
``RUN/D/em1000_*.npy`` set saved beside the run (``final_vs_best.py``: ``em1000_best.npy``, the best-validation
EMA; ``em1000_final.npy``, the last epoch's EMA, or ``em1000_best.npy`` alone when they coincide).
``--raw-weights`` first draws 128 EM-1000 series (seed 0) from the last epoch's raw (non-EMA) weights in
``train_state.pt`` (``em1000_last_net.npy``) to tell the EMA's part. A mean roughness off by tens of percent
can be mode weights — too few or too many of the energetic series — rather than texture; the quantiles show which.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from final_vs_best import study_parser, train_splits  # noqa: E402
from suite_data import znorm_like  # noqa: E402


def _raw_last(folder: Path, n: int) -> None:
    """Save ``n`` EM-1000 series (seed 0) of the last epoch's raw weights as ``em1000_last_net.npy``."""
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.sampling.sampler import Sampler

    out = folder / "em1000_last_net.npy"
    if out.is_file():
        return
    model = load_checkpoint(folder / "freq")
    model.net.load_state_dict(torch.load(folder / "freq" / "train_state.pt", weights_only=False,
                                         map_location="cpu")["net"])
    np.save(out, Sampler(model, "em").sample(n, steps=1000, batch_size=64, seed=0, progress=False).numpy())


def _quantiles(x: np.ndarray) -> str:
    sd = x.std(axis=1).mean(axis=1)
    rough = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2))
    q = (0.1, 0.5, 0.9)
    return (" / ".join(f"{v:.2f}" for v in np.quantile(sd, q)) + " | "
            + " / ".join(f"{v:.2f}" for v in np.quantile(rough, q)))


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--raw-weights", action="store_true", help="also draw from the last epoch's raw weights")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| dataset | set | series | per-series sd q10 / q50 / q90 | per-series mean abs(dx) q10 / q50 / q90 |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        ds, fit, val = train_splits(name)
        if args.raw_weights:
            _raw_last(args.run / name, args.num_samples)
        sets = [("fit", fit), ("validation", val), ("held-out", ds.test)]
        sets += [(p.stem, znorm_like(ds, np.load(p))) for p in sorted((args.run / name).glob("em1000_*.npy"))]
        for label, x in sets:
            print(f"| {name} | {label} | {len(x)} | {_quantiles(np.asarray(x, dtype=np.float64))} |", flush=True)


if __name__ == "__main__":
    main()
