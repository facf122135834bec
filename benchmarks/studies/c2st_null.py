"""Issue 23: how `--sampler auto`'s gate treats EM-1000 itself — the null distribution of the headline C2ST.

    python benchmarks/studies/c2st_null.py --sets runs/gate16 --datasets italypower japanesevowels sines \\
        --n 256 --pairs 12

``gate_check.py`` leaves per dataset two independent EM-1000 sets of the same model (seeds 0 and 2). Any
``n``-series subset of one against any ``n``-series subset of the other is a pair from one distribution, so
their C2ST is a draw from the test's null — what a perfect candidate reads against the shadow set. Per pair:
random subsets (one from each set; pairs overlap, so the sd is if anything low), ``c2st_report``'s
headline (the larger of the tree and the linear accuracy, 5-fold, classifier seed = pair index). Reported: the null's mean, sd and 95th percentile, and how often it exceeds
:func:`pyfdc.evaluation.auto.c2st_gate` (``0.5 + 1.96·sqrt(0.25 / 2n)``, a binomial bound for *one*
classifier), once and on both of two independent pairs (a choice must pass twice).
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np


def null_headlines(a: np.ndarray, b: np.ndarray, n: int, pairs: int) -> list[float]:
    """``pairs`` headline C2STs of disjoint ``n``-subsets: ``a`` and ``b`` are independent draws of one sampler."""
    from pyfdc.evaluation.quality import c2st_report

    if min(len(a), len(b)) < n:
        raise SystemExit(f"need {n} series per set, have {len(a)} and {len(b)}")
    out = []
    for p in range(pairs):
        rng = np.random.default_rng(1000 + p)
        ia, ib = rng.choice(len(a), n, replace=False), rng.choice(len(b), n, replace=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(float(c2st_report(a[np.sort(ia)], b[np.sort(ib)], seed=p)["headline"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=Path, default=Path("runs/gate16"), help="gate_check.py's --out")
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--out", type=Path, default=None, help="JSON with every headline")
    args = ap.parse_args()
    from pyfdc.evaluation.auto import c2st_gate

    gate = c2st_gate(args.n)
    print(f"gate {gate:.3f} at n = {args.n}\n")
    print("| dataset | null headline: mean | sd | 95th pct | max | P(> gate) | P(passes twice) |")
    print("|---|---|---|---|---|---|---|")
    record = {}
    for name in args.datasets:
        a, b = (np.load(args.sets / name / f"em1000_seed{s}.npy") for s in (0, 2))
        h = np.array(null_headlines(a, b, args.n, args.pairs))
        fail = float((h > gate).mean())
        record[name] = h.tolist()
        print(f"| {name} | {h.mean():.3f} | {h.std(ddof=1):.3f} | {np.quantile(h, 0.95):.3f} | {h.max():.3f} | "
              f"{fail:.2f} | {(1 - fail) ** 2:.2f} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"n": args.n, "gate": gate, "headlines": record}, indent=1) + "\n")


if __name__ == "__main__":
    main()
