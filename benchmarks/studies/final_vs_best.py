"""Issue 24: which weights a budgeted training should keep — the best-validation checkpoint or the final EMA.

    python benchmarks/studies/final_vs_best.py --run runs/fvb --datasets gunpoint ecg [--num-samples 128]

``pyfdc train`` keeps the checkpoint whose EMA weights had the lowest validation loss; its ``train_state.pt``
also holds the EMA at the end of the cosine schedule. Per dataset of a suite run (``RUN/D/freq``), both sets
of weights draw the same uncached EM-1000 series (same seed), scored on the train split's own validation
series: roughness (mean |Δx|) against the validation and fit series, the C2ST against the fit series
(mean of 3 subsamples; validation sets are too small for a C2ST) and, since a model that copies its fit
series passes that C2ST too, a copy check: the median distance from a generated series to its nearest fit
series over the same for the validation series (1 = as far from the fit series as unseen data; well below 1
= near-copies). The decision reads these only; the held-out
C2ST (5 subsamples, against the held-out split, as ``suite.py --stages score``) is printed after, for the
record. Samples are saved beside the run (``em1000_best.npy``, ``em1000_final.npy``) and reused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import load_suite_dataset, znorm_like  # noqa: E402


def _draw(folder: Path, arm: str, n: int) -> tuple[np.ndarray, int]:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.sampling.sampler import Sampler

    model = load_checkpoint(folder / "freq")
    state = torch.load(folder / "freq" / "train_state.pt", weights_only=False, map_location="cpu")
    epoch = int(state["run"]["best_epoch" if arm == "best" else "epoch"])
    if arm == "final" and epoch == int(state["run"]["best_epoch"]):
        arm = "best"   # the last epoch was the best: the checkpoint holds the final EMA itself
    out = folder / f"em1000_{arm}.npy"
    if out.is_file() and len(np.load(out)) >= n:
        return np.load(out)[:n], epoch
    if arm == "final":
        model.net.load_state_dict(state["ema"])
    x = Sampler(model, "em").sample(n, steps=1000, batch_size=64, seed=0, progress=False).numpy()
    np.save(out, x)
    return x, epoch


def _c2st(x: np.ndarray, ref: np.ndarray, seeds: int) -> tuple[float, float]:
    from pyfdc.evaluation.quality import c2st_report

    reps = []
    for s in range(seeds):
        pick = np.random.default_rng(s).choice(len(ref), min(len(ref), len(x)), replace=False)
        reps.append(c2st_report(x, ref[pick], seed=s))
    return (float(np.mean([r["hgb"]["accuracy"] for r in reps])),
            float(np.mean([r["linear"]["accuracy"] for r in reps])))


def _nn_ratio(x: np.ndarray, fit: np.ndarray, val: np.ndarray) -> float:
    """Median nearest-fit-series distance of ``x (n, N, M)`` over that of ``val`` (Euclidean, whole series)."""
    f = torch.as_tensor(fit.reshape(len(fit), -1), dtype=torch.float64)

    def nearest(a: np.ndarray) -> float:
        return float(torch.cdist(torch.as_tensor(a.reshape(len(a), -1), dtype=torch.float64), f).min(dim=1).values.median())

    return nearest(x) / nearest(val)


def print_header(columns: list[str], held_out: bool) -> None:
    """A markdown table's header for ``columns``, plus the held-out column when ``held_out``."""
    heads = columns + (["held-out C2ST (hgb / linear, 5 subsamples)"] if held_out else [])
    print("| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))


def held_out_cell(x: np.ndarray, test: np.ndarray, on: bool) -> str:
    """The held-out C2ST cell (hgb / linear, 5 subsamples) of a table row, or nothing when ``on`` is false."""
    if not on:
        return ""
    hgb, lin = _c2st(x, test, 5)
    return f" {hgb:.3f} / {lin:.3f} |"


def c2st_cells(x: np.ndarray, fit: np.ndarray, test: np.ndarray, held_out: bool) -> str:
    """A table row's C2ST cells: against the fit series (hgb / linear, 3 subsamples), then the held-out cell."""
    hgb, lin = _c2st(x, fit, 3)
    return f" {hgb:.3f} / {lin:.3f} |" + held_out_cell(x, test, held_out)


def study_parser(doc: str) -> argparse.ArgumentParser:
    """The options every study over a suite run shares: ``--run``, ``--datasets``, ``--num-samples``, ``--held-out``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--run", required=True, type=Path)
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--num-samples", type=int, default=128)
    ap.add_argument("--held-out", action="store_true", help="also print the held-out C2ST (not for deciding)")
    return ap


def train_splits(name: str) -> tuple[object, np.ndarray, np.ndarray]:
    """``(dataset, fit, val)``: the suite dataset and its train split's fit and validation series (the suite's
    TrainConfig: val 0.1, seed 0)."""
    from pyfdc.training.config import split_indices

    ds = load_suite_dataset(name)
    fit_idx, val_idx = split_indices(len(ds.train), 0.1, 0)
    return ds, ds.train[fit_idx], ds.train[val_idx]


def main() -> None:
    args = study_parser(__doc__).parse_args()
    torch.set_num_threads(1)
    print_header(["dataset", "weights", "epoch", "roughness gen / val / fit", "C2ST vs fit (hgb / linear, 3 subsamples)",
                  "nearest-fit distance, gen / val"], args.held_out)
    for name in args.datasets:
        ds, fit, val = train_splits(name)
        for arm in ("best", "final"):
            raw, epoch = _draw(args.run / name, arm, args.num_samples)
            x = znorm_like(ds, raw)
            rough = [float(np.abs(np.diff(a, axis=1)).mean()) for a in (x, val, fit)]
            hgb, lin = _c2st(x, fit, 3)
            row = (f"| {name} | {arm} | {epoch} | {rough[0]:.4f} / {rough[1]:.4f} / {rough[2]:.4f} "
                   f"({100 * (rough[0] / rough[1] - 1):+.0f}% of val) | {hgb:.3f} / {lin:.3f} | "
                   f"{_nn_ratio(x, fit, val):.2f} |")
            print(row + held_out_cell(x, ds.test, args.held_out), flush=True)


if __name__ == "__main__":
    main()
