"""How little noise the C2ST sees on each suite dataset: real series plus white noise vs real series.

Per dataset: half of the train split's series (a seeded random half) with white noise at ``r`` times each
channel's sd added, against the other half (at most 128 series per side), C2ST (trees on summary statistics,
linear on series + log-spectrum), mean of 3 subsamples, after the archive's own per-series
normalisation (as the suite scores generated series). No held-out data. A generator whose output
carries residual noise of that size reads at least this C2ST against real data, whatever else it gets
right: where noise at 1e-5 sd already reads ~0.86 (JapaneseVowels, whose equal-length series are
band-limited per utterance, so their top frequency bins are exactly zero), no continuous-output
sampler can reach the data floor on this test.

    python benchmarks/studies/noise_sensitivity.py --datasets sines japanesevowels
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import SUITE, SuiteDataMissing, load_suite_dataset, znorm_like  # noqa: E402

LEVELS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)


def sensitivity(name: str, levels: tuple[float, ...] = LEVELS,
                repeats: int = 3) -> tuple[int, list[tuple[float, float, float]]]:
    """``(n, [(r, hgb, linear)])``: mean C2ST of ``n`` train series + ``r``·sd white noise vs ``n`` others."""
    from pyfdc.evaluation.quality import c2st_report

    ds = load_suite_dataset(name)
    sd = ds.train.std(axis=(0, 1), keepdims=True)
    n = min(len(ds.train) // 2, 128)
    rows = []
    for r in levels:
        hgb, lin = [], []
        for s in range(repeats):
            rng = np.random.default_rng(s)
            perm = rng.permutation(len(ds.train))
            a, b = ds.train[perm[:n]], ds.train[perm[n:2 * n]]
            b = znorm_like(ds, b + r * sd * rng.standard_normal(b.shape))  # as generated series are scored
            rep = c2st_report(a, b, seed=s)
            hgb.append(rep["hgb"]["accuracy"])
            lin.append(rep["linear"]["accuracy"])
        rows.append((r, float(np.mean(hgb)), float(np.mean(lin))))
    return n, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(SUITE), choices=list(SUITE))
    args = ap.parse_args()
    print("| dataset | n per side | " + " | ".join(f"noise {r:g} sd (hgb / linear)" for r in LEVELS) + " |")
    print("|---|---|" + "---|" * len(LEVELS))
    for name in args.datasets:
        try:
            n, rows = sensitivity(name)
        except SuiteDataMissing as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        print(f"| {name} | {n} | " + " | ".join(f"{h:.3f} / {l:.3f}" for _, h, l in rows) + " |", flush=True)


if __name__ == "__main__":
    main()
