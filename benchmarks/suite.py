"""The development suite in one command: train, sample, score and front every dataset.

    python benchmarks/suite.py --out runs/suite                          # everything, resumable
    python benchmarks/suite.py --out runs/suite --stages train --domains freq   # one stage / domain
    python benchmarks/suite.py --out runs/suite --stages report          # tables from what exists

Per dataset (``benchmarks/suite_data.py``), in ``OUT/<dataset>/``:

1. ``train`` — a frequency- and a time-domain model (small config) at the **same wall-clock
   budget** with the shipped recipe (EMA 0.999, pinning auto, support clip, warmup 10% of the fitted
   schedule). Interrupted runs resume; ``<domain>/suite_done.json`` marks a finished one. Start the two
   domains as two processes (``--domains freq`` / ``--domains time``) to train them side by side.
2. ``front`` — the frequency model's speed–quality front (``pyfdc.evaluation.front.run_front``): uncached EM and
   DPM-Solver++(2M) at several step counts and the E2-CRF default against uncached EM-1000 (seed 0),
   floor = EM-1000 with seed 2. Samples are saved and reused.
3. ``sample`` — the time-domain model's EM-1000 set (seed 0), same size.
4. ``score`` — each model's EM-1000 set against the held-out split: C2ST (``pyfdc.evaluation.quality.data_report``,
   subsamples of the held-out size, mean over ``--c2st-repeats``) next to the data floor (train vs
   held-out) and a Gaussian fitted to the train split; roughness vs held-out; and the field's
   discriminative / predictive scores (``pyfdc.evaluation.field_scores``) of the frequency model.
5. ``calibrate`` — does ``pyfdc calibrate``'s shadow test predict the C2ST? Every candidate measured on the
   shadow batch and put on the front (``benchmarks/suite_calibration.py``).
6. ``report`` — ``<dataset>/table.md`` and the one-screen ``summary.md`` / ``summary.json``.

Nothing here touches a held-out split except to score against it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite_data import SUITE, SuiteDataMissing, load_suite_dataset  # noqa: E402
from suite_stages import _json, _read  # noqa: E402


STAGES = ("train", "front", "sample", "score", "calibrate", "report")
DOMAINS = ("freq", "time")
DONE = "suite_done.json"




# ----------------------------------------------------------------------------- train


def train_one(ds: Any, folder: Path, domain: str, minutes: float, seed: int,
              time_head: int | None = None, scaling: str = "channel",
              small_t_fraction: float = 0.0, train_batch: int | None = None) -> dict[str, Any]:
    """Train (or resume, or skip when done) one model; the budget counts over every resumed session."""
    from pyfdc.training.config import TrainConfig, recipe_time_head
    from pyfdc.training.state import STATE_FILE, _load_state
    from pyfdc.training.trainer import train

    done = _read(folder / DONE)
    if done is not None:
        return done
    state = folder / STATE_FILE
    used = float(_load_state(state)["run"]["elapsed"]) if state.is_file() else 0.0
    left = minutes - used / 60.0
    resume = state.is_file()
    if left > 0.05 or not resume:
        cfg = TrainConfig.recipe(max_minutes=max(left, 0.05), seed=seed,  # pyfdc train's default recipe
                                 small_t_fraction=small_t_fraction,
                                 **({"batch_size": train_batch} if train_batch else {}))
        if time_head is None:  # pyfdc train's default: the recipe's choice for this data
            time_head, why = recipe_time_head(ds.train, domain)
            print(f"[suite] {getattr(ds, 'name', '?')} {domain}: {why}", flush=True)
        model_config: Any = {"preset": "small", "time_head": time_head} if time_head else "small"
        result = train(ds, folder, model_config=model_config, transform_kind=domain, train_config=cfg,
                       resume=resume, overwrite=not resume and folder.exists(), scaling=scaling)
        summary = {k: v for k, v in result.summary().items() if k != "history"}
    else:
        summary = {"wall_seconds": used, "note": "budget already spent before this session"}
    summary.update(domain=domain, budget_minutes=minutes, threads=torch.get_num_threads())
    _json(folder / DONE, summary)
    return summary


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="suite folder (reruns resume from it)")
    p.add_argument("--datasets", nargs="+", default=list(SUITE), choices=list(SUITE), metavar="NAME",
                   help=f"datasets (default: all: {' '.join(SUITE)})")
    p.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES, help="stages to run (default: all)")
    p.add_argument("--domains", nargs="+", default=list(DOMAINS), choices=DOMAINS, help="models to train (default: both)")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per model, minutes (default: 15)")
    p.add_argument("--num-samples", type=int, default=512, help="series per generated set (default: 512)")
    p.add_argument("--batch-size", type=int, default=256, help="series per sampling batch (default: 256)")
    p.add_argument("--c2st-repeats", type=int, default=5, help="held-out subsamples per C2ST (default: 5)")
    p.add_argument("--field-runs", type=int, default=5, help="trainings per discriminative/predictive score; 0: no field scores (default: 5)")
    p.add_argument("--field-iterations", type=int, nargs=2, default=(2000, 5000), metavar=("DISC", "PRED"),
                   help="GRU iterations of the discriminative and predictive scores (default: 2000 5000, TimeGAN's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-head", type=int, default=None, metavar="WIDTH",
                   help="the frequency models' time-domain head width; 0: none (default: pyfdc train's choice for the data)")
    p.add_argument("--scaling", choices=("channel", "token"), default="channel",
                   help="token scaling of the models (pyfdc train --scaling; default: channel, the recipe's)")
    p.add_argument("--small-t-fraction", type=float, default=0.0,
                   help="share of training draws log-uniform in t (pyfdc train --small-t-fraction; default 0)")
    p.add_argument("--train-batch", type=int, default=None,
                   help="training batch size (default: the recipe's)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.datasets:
        try:
            ds = load_suite_dataset(name)
        except SuiteDataMissing as exc:
            print(f"suite: skipping {name}: {exc}", file=sys.stderr)
            continue
        run_dataset(name, ds, args)
    if "report" in args.stages:
        from suite_calibration import calibration_section
        from suite_stages import write_summary

        write_summary(args.out, list(SUITE), calibration_section(args.out, list(SUITE)))
    return 0


def run_dataset(name: str, ds: Any, args: argparse.Namespace) -> None:
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if "train" in args.stages:
        for domain in args.domains:
            s = train_one(ds, folder / domain, domain, args.minutes, args.seed, args.time_head,
                          args.scaling, args.small_t_fraction, args.train_batch)
            print(f"suite: {name}/{domain}: trained {s.get('epochs_run', '?')} epochs in {s['wall_seconds']:.0f}s")
    if set(args.stages) == {"train"}:
        return
    from suite_stages import front_stage, report_stage, sample_stage, score_stage

    if "front" in args.stages:
        front_stage(name, folder, args)
    if "sample" in args.stages:
        sample_stage(name, folder, args)
    if "score" in args.stages:
        score_stage(name, ds, folder, args)
    if "calibrate" in args.stages:
        from suite_calibration import calibrate_stage

        calibrate_stage(name, folder, args)
    if "report" in args.stages:
        report_stage(name, folder)
    print(f"suite: {name}: stages {' '.join(args.stages)} done in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
