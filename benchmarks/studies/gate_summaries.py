"""Issue 23: the calibration's shift gate with and without the C2ST's own summary statistics, per candidate.

    python benchmarks/studies/gate_summaries.py --checkpoint ecg_small_freq --steps 1000 --out runs/gate_ecg.json

Every default candidate measured on the calibration's shadow batch (``calibrate(all_candidates=True)``); per
candidate the largest shift over the former statistics (band log power, log curvature) and over all of them
(the same plus ``pyfdc.series_summary.summary_features``), and which statistic is largest.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FORMER = ("k", "curvature")  # keys of the gate before the summaries: "k{lo}-{hi}" bands and "curvature"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--num-shadow", type=int, default=32)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf.calibrate import calibrate

    model = load_checkpoint(args.checkpoint)
    cal = calibrate(model, args.steps, all_candidates=True, num_shadow=args.num_shadow, progress=False)
    rows = []
    for r in cal.rows:
        former = {k: v for k, v in r["shifts"].items() if k.startswith(FORMER)}
        top = max(r["shifts"], key=r["shifts"].get)
        rows.append({"budget": r["candidate"]["budget"], "former_shift": max(former.values()),
                     "shift": r["shift"], "largest": top, "passed": r["passed"], "speedup": r["speedup"],
                     "f": r["recomputed_fraction"], "shifts": r["shifts"]})
        print(f"f {rows[-1]['budget']:.2f}: former {rows[-1]['former_shift']:.3f}, with summaries {r['shift']:.3f} "
              f"({top}), {'pass' if r['passed'] else 'fail'}, shadow speedup {r['speedup']:.2f}x", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "steps": args.steps,
                                    "num_shadow": args.num_shadow, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
