"""Which statistics tell a suite model's samples from real series: one feature at a time.

Per dataset: 128 uncached EM-1000 series of the run's frequency model (seed 0; cached as
``em1000_seed0.npy`` beside the model, as ``recipe_on_validation.py`` does) against the train split's fit
series (no held-out data), after the archive's own normalisation. For every column of
:func:`pyfdc.series_summary.summary_features` (what the trees' C2ST classifies on) the AUC of that column
alone (0.5 = no signal; folded, so 1 - AUC counts too), with both sets' means: the top rows say what the
C2ST sees.

    python benchmarks/studies/c2st_features.py --suite runs/suite --datasets gunpoint sines --top 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe_on_validation import _samples  # noqa: E402
from suite_data import load_suite_dataset, znorm_like  # noqa: E402


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC of ``pos`` over ``neg`` (ties count half)."""
    both = np.concatenate([pos, neg])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for v in np.unique(both):  # average ranks over ties
        tie = both == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def feature_aucs(gen: np.ndarray, real: np.ndarray) -> list[tuple[float, str, float, float]]:
    """``[(folded AUC, name, mean generated, mean real)]`` over every summary statistic, best first."""
    from pyfdc.series_summary import summary_feature_names, summary_features

    fg, fr = summary_features(gen), summary_features(real)
    names = summary_feature_names(real.shape[1], real.shape[2])
    rows = []
    for j, name in enumerate(names):
        a = _auc(fg[:, j], fr[:, j])
        rows.append((max(a, 1 - a), name, float(fg[:, j].mean()), float(fr[:, j].mean())))
    return sorted(rows, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, required=True, help="suite folder with D/freq models")
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--num-samples", type=int, default=128)
    ap.add_argument("--top", type=int, default=5)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from pyfdc.training.config import split_indices

    print("| dataset | statistic | AUC alone | mean generated | mean real (fit) |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        ds = load_suite_dataset(name)
        fit_idx, _ = split_indices(len(ds.train), 0.1, 0)  # the suite's TrainConfig: val 0.1, seed 0
        gen = znorm_like(ds, _samples(args.suite / name, args.num_samples))
        for auc, stat, mg, mr in feature_aucs(gen, ds.train[fit_idx])[: args.top]:
            print(f"| {name} | {stat} | {auc:.3f} | {mg:.4g} | {mr:.4g} |", flush=True)


if __name__ == "__main__":
    main()
