"""Where in noise level t and frequency band the trained ε̂ misses, and what a one-shot denoise leaves (issue 24).

For each suite model (``runs/suite/<name>/freq``) on its own **validation** series (the train split's
validation part, rebuilt from the checkpoint's seed; no held-out data): noise the tokens to level t,
predict ε̂, and report per band of frequency tokens the relative error ``‖ε̂ − ε‖² / ‖ε‖²`` (1.0 =
predicting nothing), and the curvature energy (mean squared second difference) of the one-shot denoised
series ``x̂0 = (z_t − σ ε̂)/α`` against the clean series' — above 1 means the network leaves roughness that
sampling has to remove in later steps (or never does).

    python benchmarks/studies/eps_error_by_band.py --suite runs/suite --datasets ecg gunpoint osuleaf
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import load_suite_dataset  # noqa: E402

T_GRID = (1e-4, 1e-3, 1e-2, 0.1, 0.5)


def _curvature(x: np.ndarray) -> float:
    return float((np.diff(x, 2, axis=1) ** 2).mean())


def study(model, val: np.ndarray, seed: int = 0) -> list[dict]:
    """Rows per t: per-band ε error and the denoised/clean curvature ratio."""
    from pyfdc.e2crf.shadow import band_edges

    g = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(val)
    z0 = model.data_to_tokens(x).float()  # (S, T, C)
    mask = model.transform.mask(dtype=z0.dtype)
    edges = band_edges(z0.shape[1])
    rows = []
    for t in T_GRID:
        tt = torch.full((len(z0),), t)
        alpha, sigma = model.sde.marginal(tt)
        eps = torch.randn(z0.shape, generator=g) * mask
        zt = alpha[:, None, None] * z0 + sigma[:, None, None] * eps
        with torch.inference_mode():
            eh = model.eps(zt, tt) * mask
        err = {f"k{lo}-{hi}": float(((eh - eps)[:, lo:hi] ** 2).sum() / (eps[:, lo:hi] ** 2).sum().clamp_min(1e-30))
               for lo, hi in edges}
        x0 = model.tokens_to_data((zt - sigma[:, None, None] * eh) / alpha[:, None, None]).numpy()
        rows.append({"t": t, "sigma": float(sigma[0]), "eps_error": err,
                     "curvature_ratio": _curvature(x0) / _curvature(val)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=Path("runs/suite"))
    ap.add_argument("--datasets", nargs="+", default=["ecg", "gunpoint", "osuleaf"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.training.config import split_indices

    for name in args.datasets:
        model = load_checkpoint(args.suite / name / "freq")
        ds = load_suite_dataset(name)
        _, val_idx = split_indices(len(ds.train), 0.1, 0)  # the suite trains with val_fraction 0.1, seed 0
        rows = study(model, ds.train[val_idx])
        bands = list(rows[0]["eps_error"])
        print(f"\n{name} ({len(val_idx)} validation series): ε error per band of frequency tokens; "
              "curvature of x̂0 / clean\n")
        print("| t | σ | " + " | ".join(bands) + " | curvature x̂0 / clean |")
        print("|---|---|" + "---|" * len(bands) + "---|")
        for r in rows:
            print(f"| {r['t']:g} | {r['sigma']:.3f} | " + " | ".join(f"{r['eps_error'][b]:.3f}" for b in bands)
                  + f" | {r['curvature_ratio']:.2f} |")


if __name__ == "__main__":
    main()
