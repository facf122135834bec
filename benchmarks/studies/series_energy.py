"""Issue 24: how the per-series energy of saved sample sets compares with the data's (mode weights, not smoothness).

    python benchmarks/studies/series_energy.py --run runs/fvb --datasets basicmotions [--raw-weights]

For each dataset of a suite run: the 10/50/90% quantiles over series of each series' sd (mean over channels)
and mean |Δx|, for the train split's fit and validation series, the held-out split, and every
``RUN/D/em1000_*.npy`` set saved beside the run (``final_vs_best.py``: ``em1000_best.npy``, the best-validation
EMA; ``em1000_final.npy``, the last epoch's EMA, or ``em1000_best.npy`` alone when they coincide).
``--raw-weights`` first draws 128 EM-1000 series (seed 0) from the last epoch's raw (non-EMA) weights in
``train_state.pt`` (``em1000_last_net.npy``) to tell the EMA's part; ``--specs em:100 dpm2m:50 ...`` draws
from the last epoch's EMA with each sampler (``SPEC_last_ema.npy``) to tell the sampler's. A mean roughness
off by tens of percent can be mode weights — too few or too many of the energetic series — rather than
texture; the quantiles and the share of series with sd > 2 (``--loud``) show which.
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


def _draw_last(folder: Path, n: int, weights: str, spec: str) -> Path:
    """Save ``n`` series (seed 0) of the last epoch's ``weights`` (``"net"`` or ``"ema"``) drawn with the front
    spec ``spec`` (e.g. ``em:1000``, ``dpm2m:50``) beside the run; returns the file."""
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.evaluation.front import parse_spec
    from pyfdc.sampling.sampler import Sampler

    sp = parse_spec(spec)
    out = folder / f"{sp.method}{sp.steps}_last_{weights}.npy"
    if out.is_file():
        return out
    model = load_checkpoint(folder / "freq")
    model.net.load_state_dict(torch.load(folder / "freq" / "train_state.pt", weights_only=False,
                                         map_location="cpu")[weights])
    x = Sampler(model, sp.method, **sp.sampler_options()).sample(n, steps=sp.steps, batch_size=64, seed=0,
                                                                  progress=False)
    np.save(out, x.numpy())
    return out


def _quantiles(x: np.ndarray, loud: float) -> str:
    sd = x.std(axis=1).mean(axis=1)
    rough = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2))
    q = (0.1, 0.5, 0.9)
    return (" / ".join(f"{v:.2f}" for v in np.quantile(sd, q)) + " | "
            + " / ".join(f"{v:.2f}" for v in np.quantile(rough, q)) + f" | {np.mean(sd > loud):.2f}")


def main() -> None:
    ap = study_parser(__doc__)
    ap.add_argument("--raw-weights", action="store_true", help="also draw from the last epoch's raw weights")
    ap.add_argument("--specs", nargs="*", default=[], help="also draw from the last epoch's EMA with these samplers")
    ap.add_argument("--loud", type=float, default=2.0, help="the per-series sd counted as energetic (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| dataset | set | series | per-series sd q10 / q50 / q90 | per-series mean abs(dx) q10 / q50 / q90 "
          f"| share with sd > {args.loud:g} |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        ds, fit, val = train_splits(name)
        drawn = [_draw_last(args.run / name, args.num_samples, "net", "em:1000")] if args.raw_weights else []
        drawn += [_draw_last(args.run / name, args.num_samples, "ema", spec) for spec in args.specs]
        sets = [("fit", fit), ("validation", val), ("held-out", ds.test)]
        saved = sorted(set((args.run / name).glob("em1000_*.npy")) | set(drawn))
        sets += [(p.stem, znorm_like(ds, np.load(p))) for p in saved]
        for label, x in sets:
            row = _quantiles(np.asarray(x, dtype=np.float64), args.loud)
            print(f"| {name} | {label} | {len(x)} | {row} |", flush=True)


if __name__ == "__main__":
    main()
