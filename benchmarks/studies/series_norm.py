"""Issue 24: samples of per-series z-normalised archives, raw and with the training data's series norm imposed.

    python benchmarks/studies/series_norm.py --run runs/fvb --datasets italypower gunpoint osuleaf [--held-out]

ItalyPowerDemand, GunPoint and OSULeaf are z-normalised per series in the archive; until stop 37 ``pyfdc sample``
returned series that are not, and the suite normalised them before scoring (``suite_data.znorm_like``). Per
dataset: the run's saved EM-1000 set (``em1000_final.npy`` or ``em1000_best.npy``, the weights its checkpoint
keeps), scored raw and after :class:`pyfdc.core.exact_structure.SeriesNorm` fitted on the fit split (what
``pyfdc train`` now records and decoding imposes): C2ST against the fit series (3 subsamples) and, with
``--held-out``, against the held-out series (5 subsamples).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from final_vs_best import _c2st, held_out_cell, print_header, study_parser, train_splits  # noqa: E402


def main() -> None:
    args = study_parser(__doc__).parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.exact_structure import SeriesNorm

    print_header(["dataset", "series norm found (fit split)", "samples", "C2ST vs fit hgb / linear (3 subsamples)",
                  "largest |mean| / |sd - 1| over samples"], args.held_out)
    for name in args.datasets:
        ds, fit, _ = train_splits(name)
        norm = SeriesNorm.fit(fit)
        folder = args.run / name
        path = next((folder / f for f in ("em1000_final.npy", "em1000_best.npy") if (folder / f).is_file()), None)
        if norm is None or path is None:
            print(f"| {name} | {'none' if norm is None else norm.ddof} | (no saved set or nothing to impose) | | |"
                  + (" |" if args.held_out else ""), flush=True)
            continue
        raw = np.load(path)[: args.num_samples]
        for label, x in (("raw", raw), ("normalised", norm.apply(torch.as_tensor(raw)).numpy())):
            dev = np.abs(x.mean(axis=1)).max(), np.abs(x.std(axis=1, ddof=norm.ddof[0] or 0) - 1).max()
            hgb, lin = _c2st(x, fit, 3)
            row = f"| {name} | ddof {norm.ddof} | {label} | {hgb:.3f} / {lin:.3f} | {dev[0]:.2g} / {dev[1]:.2g} |"
            print(row + held_out_cell(x, ds.test, args.held_out), flush=True)


if __name__ == "__main__":
    main()
