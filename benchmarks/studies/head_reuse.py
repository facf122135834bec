"""Issue 23: the default with the time head's correction reused between its runs (``head_every``) vs the default
that runs the head on every step, on suite models at 1,000 EM steps.

    python benchmarks/studies/head_reuse.py --suite runs/s39 --datasets italypower --num-samples 512 --out runs/hr

Per dataset (the frequency model in ``SUITE/<dataset>/freq``; ``--ecg-checkpoint`` for another ECG model):

1. ``calibrate(all_candidates=True)``: every default candidate (each budget with the head every 4 steps, then
   every step) on the 32 shadow series; today's choice (the first that passes) and the choice among the
   every-step candidates alone (what the calibration chose before head reuse).
2. ``--num-samples`` series of uncached EM-1000, seed 0 (the reference) and seed 2 (the floor), and of both
   choices with seed 2: C2ST against the reference (three classifier seeds, mean) and the largest statistic
   shift against the seed-2 twin. Sets kept in ``OUT/<dataset>/`` (gate_check.py's names) and reused.
3. Wall time side by side in one process (batch 64, warm-up, ``--rounds`` interleaved rounds, order rotated;
   medians): EM-1000, the every-step choice, today's choice.

A choice *keeps* EM-1000's distribution when its C2ST is within the floor + 0.03 (issue 23's target).
Nothing here reads a data split: the models only.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gate_check import STEPS, _c2st, _draw

GATE, MIN_SPEEDUP = 0.15, 1.1


def _choice(rows: list[dict[str, Any]], configs: list[Any], every_step_only: bool) -> Any:
    for r, cfg in zip(rows, configs):
        if every_step_only and cfg.head_period != 1:
            continue
        if r["passed"]:
            return cfg
    return None


def _timing(model: Any, configs: dict[str, Any], rounds: int, batch: int = 64) -> dict[str, float]:
    from pyfdc.sampling.sampler import Sampler

    def once(cfg: Any) -> float:
        t0 = time.perf_counter()
        Sampler(model, "em", cache=cfg).sample(batch, steps=STEPS, batch_size=batch, seed=5, progress=False)
        return time.perf_counter() - t0

    names = list(configs)
    with torch.inference_mode():
        for cfg in configs.values():   # warm-up
            Sampler(model, "em", cache=cfg).sample(batch, steps=3, batch_size=batch, seed=5, progress=False)
        secs: dict[str, list[float]] = {n: [] for n in names}
        for r in range(rounds):
            for n in names[r % len(names):] + names[:r % len(names)]:
                secs[n].append(once(configs[n]))
    return {n: statistics.median(v) for n, v in secs.items()}


def check(name: str, model_dir: Path, out: Path, n: int, rounds: int) -> dict[str, Any]:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf.calibrate import calibrate, candidate_configs
    from pyfdc.e2crf.shadow import statistic_shift

    torch.set_num_threads(1)
    model = load_checkpoint(model_dir)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    cal = calibrate(model, STEPS, all_candidates=True, progress=False)
    _, configs = candidate_configs(model, [r["candidate"] for r in cal.rows])
    rows = [{"budget": c.budget, "head_every": c.head_period, "shift": r["shift"],
             "largest": max(r["shifts"], key=r["shifts"].get), "shadow_speedup": r["speedup"], "passed": r["passed"]}
            for r, c in zip(cal.rows, configs)]
    chosen = {"head_reuse": _choice(cal.rows, configs, False), "every_step": _choice(cal.rows, configs, True)}
    ref, _ = _draw(model, folder, "em1000_seed0", n, 0, None)
    twin, _ = _draw(model, folder, "em1000_seed2", n, 2, None)
    result: dict[str, Any] = {"dataset": name, "num_samples": n, "rows": rows, "floor": _c2st(twin, ref), "choices": {}}
    for label, cfg in chosen.items():
        if cfg is None:
            result["choices"][label] = None
            continue
        x, _ = _draw(model, folder, f"e2crf_f{cfg.budget}_h{cfg.head_period}_seed2", n, 2, cfg)
        result["choices"][label] = {"budget": cfg.budget, "head_every": cfg.head_period, "c2st": _c2st(x, ref),
                                    "shift_on_sets": max(statistic_shift(x, twin).values())}
    timed = {"em": None, **{k: v for k, v in chosen.items() if v is not None}}
    result["seconds"] = _timing(model, timed, rounds)
    (folder / "head_reuse.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def line(r: dict[str, Any]) -> str:
    """One markdown row: floor; per choice its config, C2ST and speedup over EM-1000 side by side."""
    fl = float(np.mean(r["floor"]))
    cells = []
    for label in ("every_step", "head_reuse"):
        c = r["choices"][label]
        if c is None:
            cells.append("uncached")
            continue
        v = float(np.mean(c["c2st"]))
        keep = "keeps" if v <= fl + 0.03 else "**changes**"
        cells.append(f"f {c['budget']:g}, head every {c['head_every']}: {v:.3f} {keep}, "
                     f"{r['seconds']['em'] / r['seconds'][label]:.2f}×")
    return f"| {r['dataset']} | {fl:.3f} | " + " | ".join(cells) + f" | {r['seconds']['em']:.1f} s |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", type=Path, default=Path("runs/suite"))
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--num-samples", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/head_reuse"))
    ap.add_argument("--ecg-checkpoint", default=None, help="use this checkpoint for 'ecg' (e.g. the shipped one)")
    args = ap.parse_args()
    for name in args.datasets:
        model_dir = Path(args.ecg_checkpoint) if name == "ecg" and args.ecg_checkpoint else args.suite / name / "freq"
        print(line(check(name, model_dir, args.out, args.num_samples, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
