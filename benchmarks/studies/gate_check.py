"""Issue 23: does the calibration's gate predict the C2ST on each suite model? The former gate (band powers and
log curvature) against today's (the same plus every statistic the C2ST's tree classifier reads).

    python benchmarks/studies/gate_check.py --suite runs/suite --datasets italypower gunpoint --num-samples 256 \\
        --out runs/gate

Per dataset, for the frequency model at 1,000 EM steps:

1. ``calibrate(all_candidates=True)`` (32 shadow series, the calibration seed): every candidate's largest shift
   over the former statistics and over all of them; each gate's choice (the cheapest candidate within 0.15 and
   ≥ 1.1× on the shadow batch).
2. ``--num-samples`` series of uncached EM-1000 with seed 0 (the reference) and seed 2 (the floor, and the
   same-noise twin of every candidate), and of each gate's choice and the candidate just cheaper than today's
   choice, with seed 2: C2ST against the reference (three classifier seeds, mean), and the shift on these
   series against the twin. Samples are kept in ``OUT/<dataset>/`` and reused.

A choice *keeps* EM-1000's distribution when its C2ST is within the floor + 0.03 (issue 23's target).
Nothing here reads a data split: the models only.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEPS, GATE, MIN_SPEEDUP = 1000, 0.15, 1.1
FORMER = ("k", "curvature")   # the former gate's keys: "k{lo}-{hi}" bands and "curvature"


def _former(shifts: dict[str, float]) -> float:
    return max(v for k, v in shifts.items() if k.startswith(FORMER))


def _draw(model: Any, folder: Path, name: str, n: int, seed: int, cache: Any) -> tuple[np.ndarray, float | None]:
    """``n`` series of EM-1000 (``cache`` None) or E2-CRF with ``cache``; kept as ``folder/name.npy``."""
    from pyfdc.sampling.sampler import Sampler

    path = folder / f"{name}.npy"
    if path.is_file():
        return np.load(path), None
    t0 = time.perf_counter()
    with torch.inference_mode():
        x = Sampler(model, "em", cache=cache).sample(n, steps=STEPS, batch_size=64, seed=seed, progress=False).numpy()
    seconds = time.perf_counter() - t0
    np.save(folder / f"{name}.tmp.npy", x)
    (folder / f"{name}.tmp.npy").replace(path)
    return x, seconds


def _c2st(a: np.ndarray, b: np.ndarray) -> list[float]:
    from pyfdc.evaluation.quality import c2st_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [float(c2st_report(a, b, seed=s)["headline"]) for s in (0, 1, 2)]


def check(name: str, model_dir: Path, out: Path, n: int) -> dict[str, Any]:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf.calibrate import calibrate, calibration_file, candidate_configs, keep_in_checkpoint
    from pyfdc.e2crf.shadow import statistic_shift

    model = load_checkpoint(model_dir)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    cal = calibrate(model, STEPS, all_candidates=True, progress=False)
    keep_in_checkpoint(cal, calibration_file(model_dir, STEPS))   # the model's default from here on (not shipped ones)
    rows = [{"budget": r["candidate"]["budget"], "former": _former(r["shifts"]), "shift": r["shift"],
             "largest": max(r["shifts"], key=r["shifts"].get), "shadow_speedup": r["speedup"]} for r in cal.rows]
    fast = [r["shadow_speedup"] >= MIN_SPEEDUP for r in rows]
    old = next((i for i, r in enumerate(rows) if r["former"] <= GATE and fast[i]), None)
    new = next((i for i, r in enumerate(rows) if r["shift"] <= GATE and fast[i]), None)
    look = sorted({i for i in (old, new) if i is not None} | ({new - 1} if new else set())
                  | ({len(rows) - 1} if new is None else set()))
    ref, t_ref = _draw(model, folder, "em1000_seed0", n, 0, None)
    twin, t_twin = _draw(model, folder, "em1000_seed2", n, 2, None)
    floor = _c2st(twin, ref)
    _, configs = candidate_configs(model, [r["candidate"] for r in cal.rows])
    for i in look:
        x, secs = _draw(model, folder, f"e2crf_f{rows[i]['budget']}_seed2", n, 2, configs[i])
        sh = statistic_shift(x, twin)
        rows[i].update(c2st=_c2st(x, ref), shift_on_sets=max(sh.values()), former_on_sets=_former(sh),
                       seconds=secs)
    result = {"dataset": name, "num_samples": n, "floor": floor, "em1000_seconds": t_twin or t_ref, "rows": rows,
              "former_choice": None if old is None else rows[old]["budget"],
              "choice": None if new is None else rows[new]["budget"]}
    (folder / "gate_check.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def line(r: dict[str, Any]) -> str:
    """One markdown row: floor, then each measured candidate as ``f: shift (former) → C2ST``."""
    fl = float(np.mean(r["floor"]))
    cells = []
    for row in r["rows"]:
        if "c2st" in row:
            c = float(np.mean(row["c2st"]))
            mark = "keeps" if c <= fl + 0.03 else "**changes**"
            cells.append(f"f {row['budget']:g}: {row['shift']:.2f} ({row['former']:.2f}) → {c:.3f} {mark}")
    fmt = lambda b: "uncached" if b is None else f"f {b:g}"  # noqa: E731
    return (f"| {r['dataset']} | {fl:.3f} | {fmt(r['former_choice'])} | {fmt(r['choice'])} | " + "; ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=Path("runs/suite"))
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--num-samples", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("runs/gate"))
    ap.add_argument("--ecg-checkpoint", default=None, help="use this checkpoint for 'ecg' (e.g. the shipped one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.datasets:
        model_dir = Path(args.ecg_checkpoint) if name == "ecg" and args.ecg_checkpoint else args.suite / name / "freq"
        print(line(check(name, model_dir, args.out, args.num_samples)), flush=True)


if __name__ == "__main__":
    main()
