"""Two suite runs' frequency models side by side on the train split's own validation series (no held-out data).

Per dataset: 128 uncached EM-1000 series of each model (seed 0; a run's front reference set is reused when
it exists), then roughness (mean |Δx|) against the validation series and the fit series, and the C2ST
against the fit series (validation sets are too small for a C2ST: 16–160 series). The archives that
z-normalise every series get the same normalisation on generated series (``suite_data.znorm_like``).

    python benchmarks/studies/recipe_on_validation.py --runs base=runs/suite snr=runs/suite_snr --datasets gunpoint ecg
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import load_suite_dataset, znorm_like  # noqa: E402


def _samples(folder: Path, n: int) -> np.ndarray:
    ref = folder / "front" / "samples" / "reference" / "em_1000.npy"
    if ref.is_file() and len(np.load(ref)) >= n:
        return np.load(ref)[:n]
    out = folder / "em1000_seed0.npy"
    if out.is_file() and len(np.load(out)) >= n:
        return np.load(out)[:n]
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.sampling.sampler import Sampler

    x = Sampler(load_checkpoint(folder / "freq"), "em").sample(n, steps=1000, batch_size=64, seed=0, progress=False)
    np.save(out, x.numpy())
    return x.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, metavar="NAME=DIR")
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--num-samples", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.evaluation.quality import c2st_report
    from pyfdc.training.config import split_indices

    runs = dict(r.split("=", 1) for r in args.runs)
    print("| dataset | run | roughness gen / val / fit | increment kurtosis gen / val | "
          "C2ST vs fit (hgb / linear, mean of 3 subsamples) | epochs |")
    print("|---|---|---|---|---|---|")
    for name in args.datasets:
        ds = load_suite_dataset(name)
        fit_idx, val_idx = split_indices(len(ds.train), 0.1, 0)  # the suite's TrainConfig: val 0.1, seed 0
        fit, val = ds.train[fit_idx], ds.train[val_idx]
        for label, root in runs.items():
            folder = Path(root) / name
            x = znorm_like(ds, _samples(folder, args.num_samples))
            rough = [float(np.abs(np.diff(a, axis=1)).mean()) for a in (x, val, fit)]
            kurt = [_kurtosis(np.diff(a, axis=1)) for a in (x, val)]
            hgb, lin = [], []
            for s in range(3):
                sub = fit[np.random.default_rng(s).choice(len(fit), min(len(fit), len(x)), replace=False)]
                rep = c2st_report(x, sub, seed=s)
                hgb.append(rep["hgb"]["accuracy"])
                lin.append(rep["linear"]["accuracy"])
            done = json.loads((folder / "freq" / "suite_done.json").read_text())
            print(f"| {name} | {label} | {rough[0]:.4f} / {rough[1]:.4f} / {rough[2]:.4f} | {kurt[0]:.1f} / {kurt[1]:.1f} | "
                  f"{np.mean(hgb):.3f} / {np.mean(lin):.3f} | {done.get('epochs_run')} |", flush=True)


def _kurtosis(d: np.ndarray) -> float:
    """Kurtosis of the increments (3 for Gaussian ones; real series that change slowly and then jump: far more)."""
    c = d - d.mean()
    return float((c ** 4).mean() / (c ** 2).mean() ** 2)


if __name__ == "__main__":
    main()
