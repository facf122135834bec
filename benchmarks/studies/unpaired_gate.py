"""Can a shadow test choose the step count? An unpaired statistic shift checked against the suite's fronts.

The calibration's gate (:func:`pyfdc.e2crf.shadow.statistic_shift`) compares a cached set with its *same-noise*
uncached twin. A sampler with other steps or another solver follows other paths from the same noise, so
choosing among step counts (``--sampler auto``, issue 23) needs an *unpaired* test against EM-1000. Here,
on every suite dataset's saved front sets (no sampling), each candidate's largest standardised shift of a
per-series statistic (band log power per channel, log curvature) against the EM-1000 reference,
``sqrt(max((mean_c − mean_r)² − var_c/n_c − var_r/n_r, 0)) / sd_r`` (debiased for the two sets' sampling
noise), beside the front's verdict (C2ST within the floor's 1.96-s.e. margin).

    python benchmarks/studies/unpaired_gate.py --suite runs/suite
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def per_series_stats(x: np.ndarray, fractions: tuple[float, ...] = (0.1, 0.3, 0.6)) -> dict[str, np.ndarray]:
    """``x (S, N, M)`` -> name -> ``(S, M)``: log power per frequency band, log curvature energy."""
    from pyfdc.e2crf.shadow import band_edges, power_spectrum

    p = power_spectrum(x.astype(np.float64))
    floor = 1e-12 * max(float(p.mean()), 1e-300)
    out = {f"k{lo}-{hi}": np.log(p[:, lo:hi].mean(1) + floor) for lo, hi in band_edges(p.shape[1], fractions)}
    curv = (np.diff(x.astype(np.float64), 2, axis=1) ** 2).mean(1)
    out["curvature"] = np.log(curv + 1e-12 * max(float(curv.mean()), 1e-300))
    return out


def unpaired_shift(cand: np.ndarray, ref: np.ndarray) -> float:
    """The largest debiased standardised mean difference over statistics and channels."""
    sc, sr = per_series_stats(cand), per_series_stats(ref)
    worst = 0.0
    for name in sr:
        c, r = sc[name], sr[name]
        d2 = (c.mean(0) - r.mean(0)) ** 2 - c.var(0, ddof=1) / len(c) - r.var(0, ddof=1) / len(r)
        sd = r.std(0, ddof=1)
        worst = max(worst, float(np.max(np.sqrt(np.maximum(d2, 0.0)) / np.maximum(sd, 1e-300))))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="runs/suite", type=Path)
    args = ap.parse_args()
    from pyfdc.evaluation.front import c2st_margin

    print("| dataset | sampler | unpaired shift | C2ST vs EM-1000 | floor | keeps (front) |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(p for p in args.suite.iterdir() if (p / "front" / "front.json").is_file()):
        front = json.loads((folder / "front" / "front.json").read_text())
        ref = np.load(folder / "front" / "samples" / "reference" / "em_1000.npy")
        floor = front["floor"]
        for row in [floor, *front["rows"][1:]]:
            name = row["sampler"].replace(" (floor)", "")
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # SamplerSpec.slug (older specs too)
            path = folder / "front" / "samples" / "seed2" / f"{slug}.npy"
            if not path.is_file():
                continue
            keeps = row["c2st"]["headline"] <= floor["c2st"]["headline"] + c2st_margin(row, floor)
            print(f"| {folder.name} | {row['sampler']} | {unpaired_shift(np.load(path), ref):.3f} | "
                  f"{row['c2st']['headline']:.3f} | {floor['c2st']['headline']:.3f} | {'yes' if keeps else 'no'} |",
                  flush=True)


if __name__ == "__main__":
    main()
