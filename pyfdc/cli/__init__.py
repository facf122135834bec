"""Command line: ``pyfdc train | sample | calibrate | evaluate | benchmark | demo`` (also ``python -m pyfdc``).

Every command writes into an ``--out`` folder that must be new or empty unless ``--overwrite``
is given; every file is written atomically. Bad arguments and bad inputs (missing or corrupt
checkpoint, mismatched shapes, invalid hyper-parameters) exit with status 2 and a one-line
message, no traceback (set ``PYFDC_DEBUG=1`` to see it).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any




from pyfdc import distributed
from pyfdc.cli.args import UsageError, _check_device, build_parser
from pyfdc.cli.draw import draw_samples
from pyfdc.cli.io import (CALIBRATE_OUTPUTS, CALIBRATION_FILE, CALIBRATION_PLOT, METRICS_FILE,  # noqa: F401  (re-exported)
                          SAMPLE_INFO_FILE, SAMPLE_OUTPUTS, SAMPLES_FILE, STATS_FILE, TINY_MODEL, _echo, _save_npy,
                          _write_json, set_quiet)
from pyfdc.cli.demo import cmd_demo
from pyfdc.cli.evaluate import cmd_evaluate, evaluate_samples, gaussian_baseline, sw_report  # noqa: F401
from pyfdc.outdir import OutputSet, is_debris

DISTRIBUTED_COMMANDS = ("train", "sample")  # the commands that join a torchrun job


# ----------------------------------------------------------------------------- train


def _train_data(args: argparse.Namespace) -> Any:
    from pyfdc.data import load_dataset, load_series

    own = {"--split": args.split, "--test-fraction": args.test_fraction, "--channels": args.channels,
           "--length": args.length}
    if args.data is None:
        given = [k for k, v in own.items() if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} need --data FILE")
        return load_dataset(args.dataset or "ecg", root=args.data_root)
    if args.dataset is not None or args.data_root is not None:
        raise UsageError("--data FILE replaces --dataset/--data-root; give one or the other")
    if (args.channels is not None or args.length is not None) and args.data.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError("--channels/--length are for .csv/.parquet files only (arrays carry their axes)")
    return load_series(args.data, split=args.split, test_fraction=args.test_fraction,
                       channels=args.channels or 1, seed=args.seed, length=args.length)


def _train_recipe(args: argparse.Namespace) -> tuple[int, float | None, int, float | None, int, str]:
    """``(epochs, max_minutes, warmup, ema, batch, keep)`` from the flags over the recipe
    (:meth:`TrainConfig.recipe`): no --epochs means a budget (default 15 minutes) fitted with at most 3,000
    epochs; --epochs alone means exactly that many. Resuming keeps the run's own warmup, EMA, batch size and
    kept weights unless a flag sets them (a default is not a change)."""
    from pyfdc.training.config import RECIPE_BATCH, RECIPE_EMA, RECIPE_EPOCH_CAP, RECIPE_KEEP, RECIPE_MINUTES

    epochs, minutes = args.epochs, args.max_minutes
    if epochs is None:
        epochs, minutes = RECIPE_EPOCH_CAP, RECIPE_MINUTES if minutes is None else minutes
    warmup = args.warmup_epochs if args.warmup_epochs is not None else round(0.1 * epochs)
    ema = RECIPE_EMA if args.ema is None else (None if args.ema == "off" else args.ema)
    batch = RECIPE_BATCH if args.batch_size is None else args.batch_size
    keep = RECIPE_KEEP if args.keep is None else args.keep
    state = args.out / "train_state.pt"
    if args.resume and None in (args.warmup_epochs, args.ema, args.batch_size, args.keep) and state.is_file():
        from pyfdc.training.state import _load_state

        try:
            old = _load_state(state)["config"]
            warmup = int(old["warmup_epochs"]) if args.warmup_epochs is None else warmup
            ema = old.get("ema_decay") if args.ema is None else ema
            batch = int(old["batch_size"]) if args.batch_size is None else batch
            keep = str(old.get("keep", "best")) if args.keep is None else keep
        except (ValueError, KeyError, TypeError):
            pass  # train() reports the unreadable state with its own message
    if warmup > epochs:
        raise UsageError(f"--warmup-epochs {warmup} exceeds --epochs {epochs}")
    return epochs, minutes, warmup, ema, batch, keep


def _time_head(args: argparse.Namespace, dataset: Any) -> tuple[int, str]:
    """``--time-head`` if given; on ``--resume`` the run's own; with ``--tiny`` none; else the recipe's choice
    for this data (:func:`pyfdc.training.config.recipe_time_head`); and why, in a few words."""
    from pyfdc.training.config import recipe_time_head

    if args.time_head is not None:
        return args.time_head, f"time head {args.time_head} (--time-head)" if args.time_head else "no time head"
    if args.tiny:
        return 0, "no time head (--tiny)"
    saved = args.out / "config.json"
    if args.resume and saved.is_file():
        try:
            head = int(json.loads(saved.read_text()).get("model_config", {}).get("time_head", 0))
            return head, f"time head {head} (the resumed run's)" if head else "no time head (the resumed run's)"
        except (ValueError, TypeError, AttributeError):
            pass  # train() reports the unreadable checkpoint with its own message
    return recipe_time_head(dataset.train, args.domain)


def cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from pyfdc.training.trainer import TrainConfig, train

    epochs, minutes, warmup, ema, batch, keep = _train_recipe(args)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite are mutually exclusive")
    if not args.resume and args.out.is_dir() and not args.overwrite and \
            any(not is_debris(p.name) for p in args.out.iterdir()):
        raise UsageError(f"--out {args.out} is not empty; choose a new folder, pass --overwrite, "
                         "or --resume an interrupted run")
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_epochs=warmup, ema_decay=ema,
                      val_fraction=args.val_fraction, seed=args.seed, max_minutes=minutes,
                      small_t_fraction=args.small_t_fraction, keep=keep,
                      device=_check_device(args.device))
    dataset = _train_data(args)
    model_config: Any = dict(TINY_MODEL) if args.tiny else {"preset": args.config}
    head, why = _time_head(args, dataset)
    if head:
        model_config["time_head"] = head
    result = train(dataset, args.out, model_config=model_config, transform_kind=args.domain,
                   train_config=cfg, resume=args.resume, progress=args.progress,
                   overwrite=args.overwrite, scaling=args.scaling,
                   pinning=args.pinning)
    summary = result.summary()
    _echo(f"trained {summary['epochs_run']} epochs in {summary['wall_seconds']:.1f}s; best val loss "
          f"{summary['best_val_loss']} at epoch {summary['best_epoch']}; {why}; checkpoint: {args.out} "
          f"(epoch {summary['kept_epoch']}'s weights, --keep {keep})")
    if result.model.exact is not None:
        _echo(f"exact structure in the training series: {result.model.exact.describe()}; samples get the same "
              "(pyfdc sample --clip off does without)")
    return summary


# ----------------------------------------------------------------------------- sample


def _e2crf_options(args: argparse.Namespace) -> dict[str, Any]:
    from pyfdc.cli.args import E2CRF_FLAGS

    return {k: getattr(args, f"e2crf_{k}") for k in E2CRF_FLAGS if getattr(args, f"e2crf_{k}", None) is not None}


def _e2crf_config(args: argparse.Namespace, model: Any = None) -> Any:
    """The E2-CRF config the options ask for: ``E2CRFConfig()`` with each ``--e2crf-*`` field set, or the
    ``--e2crf-config`` file's (``None`` there means uncached). A budget left open is resolved by
    :func:`_resolve_e2crf` once the output folder is claimed."""
    from pyfdc.e2crf import E2CRFConfig

    if getattr(args, "e2crf_config", None) is not None:
        from pyfdc.e2crf.calibrate import Calibration

        cal = Calibration.load(args.e2crf_config)
        if model is not None:
            cal.check_model(model, f"--e2crf-config {args.e2crf_config}")
        if cal.steps != args.steps:
            raise UsageError(f"--e2crf-config {args.e2crf_config} was calibrated for {cal.steps} steps, not "
                             f"--steps {args.steps}; calibrate again for this step count")
        return cal.config
    return E2CRFConfig.from_options(_e2crf_options(args))


def _resolve_e2crf(model: Any, config: Any, steps: int, progress: bool) -> Any:
    """A config with an open budget gets this model's calibration for ``steps`` EM steps (the default's is
    kept in the checkpoint folder; made on first use), said in one line; ``None`` = sample uncached."""
    from pyfdc.e2crf.calibrate import calibration_for, describe

    if config is None or config.budget is not None:
        return config
    cal = calibration_for(model, steps, "em", base=config, progress=progress, say=lambda line: _echo(f"e2crf: {line}"))
    _echo(f"e2crf: this model's calibration for {steps} steps: {describe(cal)}")
    return cal.config


def _resolve_auto(model: Any, progress: bool) -> tuple[str, int, Any]:
    """``--sampler auto``: this model's kept choice (made on first use), said in one line, as
    ``(sampler, steps, e2crf config or None)``."""
    from pyfdc.evaluation.auto import model_auto_choice

    choice = model_auto_choice(model, progress=progress, say=lambda line: _echo(f"auto: {line}"))
    _echo(f"auto: this model's sampler: {choice.describe()}")
    spec = choice.sampler_spec
    return spec.kind, spec.steps, (spec.e2crf_config() if spec.kind == "e2crf" else None)


def cmd_sample(args: argparse.Namespace) -> dict[str, Any]:
    from pyfdc.core.checkpoint import load_checkpoint

    given = _e2crf_options(args)
    if (given or args.e2crf_config is not None) and args.sampler != "e2crf":
        raise UsageError(f"--e2crf-* options need --sampler e2crf (got --sampler {args.sampler})")
    if given and args.e2crf_config is not None:
        raise UsageError("--e2crf-config replaces the other --e2crf-* options; give one or the other")
    if args.sampler == "auto" and args.steps is not None:
        raise UsageError("--steps cannot be combined with --sampler auto: auto chooses the solver and the steps")
    if args.steps is None and args.sampler != "auto":
        args.steps = 1000
    e2cfg = _e2crf_config(args) if args.sampler == "e2crf" else None  # validate before any work
    world = getattr(args, "world", None) or distributed.World()
    if args.num_samples < world.size:
        raise UsageError(f"--num-samples {args.num_samples} is fewer than the {world.size} processes of this run")
    model = load_checkpoint(args.checkpoint, map_location=_check_device(args.device))
    model.clip = getattr(args, "clip", "auto") == "auto"
    if args.sampler == "e2crf":
        e2cfg = _e2crf_config(args, model)
    if e2cfg is not None:
        e2cfg.check_tokens(model.transform.num_tokens, model.transform.kind)  # before --out is claimed
    claim: list[OutputSet] = []  # rank 0's claim on --out (one run at a time; the set is committed whole)
    distributed.on_main(world, lambda: claim.append(OutputSet(args.out, args.overwrite, SAMPLE_OUTPUTS,
                                                              "pyfdc sample").open()))
    try:
        if args.sampler == "auto":  # rank 0 chooses (minutes on first use): one choice for every rank
            args.sampler, args.steps, e2cfg = distributed.on_main(world, lambda: _resolve_auto(model, args.progress))
        if e2cfg is not None and e2cfg.budget is None:  # rank 0 calibrates (timed): one choice for every rank
            e2cfg = distributed.on_main(world, lambda: _resolve_e2crf(model, e2cfg, args.steps, args.progress))
        return _sample_into(args, model, e2cfg, world, claim[0] if claim else None)
    finally:
        for c in claim:
            c.close()


def _sample_into(args: argparse.Namespace, model: Any, e2cfg: Any, world: Any, claim: OutputSet | None) -> dict[str, Any]:
    """Draw this rank's block, gather, and (rank 0) write the set into the claim's stage and commit it."""
    from pyfdc import __version__
    from pyfdc.core.model import weights_fingerprint

    t0 = time.perf_counter()
    start, stop = distributed.shard(args.num_samples, world)  # noise is per sample id: shards join seamlessly
    samples, stats, _ = draw_samples(model, args.sampler, stop - start, args.steps, args.batch_size, args.seed,
                                     args.progress, e2cfg, sample_offset=start, world=world,
                                     compile=getattr(args, "compile", False))
    blocks = [distributed.shard(args.num_samples, distributed.World(rank=r, size=world.size))
              for r in range(world.size)]  # every rank's block, as each computed its own
    if world.active:
        import numpy as np

        samples = np.concatenate(distributed.all_gather(world, samples), axis=0)
    wall = time.perf_counter() - t0
    info = {
        "checkpoint": str(args.checkpoint), "dataset": model.meta.get("dataset"),
        "transform": model.transform.kind, "sampler": args.sampler, "num_samples": args.num_samples,
        "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
        "wall_seconds": round(wall, 3), "series_per_second": args.num_samples / wall,
        "shape": list(samples.shape), "pyfdc_version": __version__,
        "world_size": world.size, "model_id": weights_fingerprint(model),
        "support_clip": None if model.bounds is None or not model.clip else model.bounds.to_dict(),
        "exact_structure": None if model.exact is None or not model.clip else model.exact.to_dict(),
        "rank_sample_ids": [{"rank": r, "start": a, "stop": b} for r, (a, b) in enumerate(blocks)],
    }
    if stats is not None:
        info["e2crf_config"] = None if e2cfg is None else {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in e2cfg.to_dict().items()}
        info["mean_recomputed_fraction"] = stats.get("mean_recomputed_fraction")

    def write() -> None:
        assert claim is not None
        _save_npy(claim.stage / SAMPLES_FILE, samples)
        if stats is not None:
            _write_json(claim.stage / STATS_FILE, stats)
        _write_json(claim.stage / SAMPLE_INFO_FILE, info)
        claim.commit()

    distributed.on_main(world, write)
    _echo(f"{args.num_samples} samples in {wall:.1f}s ({info['series_per_second']:.2f} series/s) -> {args.out}")
    return info


# ----------------------------------------------------------------------------- calibrate


def cmd_calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf.calibrate import DEFAULT_CANDIDATES, DEFAULT_TAIL, calibrate
    from pyfdc.pretrained import pretrained_path

    targets = {k: v for k, v in (("max_shift", args.max_shift), ("max_deviation", args.max_deviation),
                                 ("max_band_error", args.max_band_error), ("min_speedup", args.min_speedup))
               if v is not None}
    tail = DEFAULT_TAIL if args.tail is None else args.tail
    budgets = sorted(set(args.budgets or [c["budget"] for c in DEFAULT_CANDIDATES]))
    periods = dict.fromkeys(args.head_every or [c["head_every"] for c in DEFAULT_CANDIDATES])   # in order, once
    candidates = [{"budget": b, "tail": tail, "head_every": h} for b in budgets for h in periods]
    model = load_checkpoint(args.checkpoint or pretrained_path(), map_location=_check_device(args.device))
    model.clip = args.clip == "auto"
    with OutputSet(args.out, args.overwrite, CALIBRATE_OUTPUTS, "pyfdc calibrate") as claim:
        cal = calibrate(model, args.steps, solver=args.solver, candidates=candidates, num_shadow=args.shadow,
                        batch_size=args.batch_size, progress=args.progress, all_candidates=args.all_candidates,
                        **targets)
        from pyfdc.evaluation.plots import plot_calibration

        cal.save(claim.stage / CALIBRATION_FILE)
        plot_calibration(cal.to_dict(), claim.stage / CALIBRATION_PLOT)
        out = claim.commit()
    for row in cal.rows:
        cand = row["candidate"]
        _echo(f"  budget {cand.get('budget')}, tail {cand.get('tail', 0)}, head every {cand.get('head_every', 1)}: shift {row['shift']:.3f}, "
              f"deviation {row['deviation_median']:.4f}, worst |band error| "
              f"{row['worst_band_error']:.3f}, {row['speedup']:.2f}x -> {'pass' if row['passed'] else 'fail'}")
    chosen = "uncached (no candidate met the targets)" if cal.fallback else cal.config.describe()
    _echo(f"calibrated for {args.steps} {args.solver} steps: {chosen} -> {out / CALIBRATION_FILE}")
    return cal.to_dict()


# ----------------------------------------------------------------------------- benchmark


def cmd_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import statistics

    import numpy as np

    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.pretrained import pretrained_path

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    path = args.checkpoint if args.checkpoint is not None else pretrained_path()
    if args.front:
        return _front(args, path)
    if args.out is not None or args.specs is not None:
        raise UsageError("--out and --specs belong to --front")
    if args.num_samples is None:
        args.num_samples = 64
    if args.sampler != "e2crf":
        raise UsageError(f"benchmark compares e2crf with uncached em; --sampler {args.sampler} is not timed here")
    _e2crf_config(args)  # validate before loading
    model = load_checkpoint(path, map_location=_check_device(args.device))
    e2cfg = _resolve_e2crf(model, _e2crf_config(args, model), args.steps, args.progress)
    run = dict(num_samples=args.num_samples, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
               progress=False)
    warm = dict(run, num_samples=min(args.num_samples, args.batch_size), steps=min(args.steps, 20))
    for sampler in ("em", "e2crf"):  # warm-up: allocator, kernels, thread pools
        draw_samples(model, sampler, warm["num_samples"], warm["steps"], args.batch_size, args.seed, False, e2cfg)
    times: dict[str, list[float]] = {"em": [], "e2crf": []}
    outs: dict[str, Any] = {}
    fs: list[float] = []
    for r in range(args.repeats):
        _echo(f"repeat {r + 1}/{args.repeats}")
        for sampler in ("em", "e2crf"):
            x, stats, wall = draw_samples(model, sampler, args.num_samples, args.steps, args.batch_size,
                                          args.seed, args.progress, e2cfg)
            times[sampler].append(wall)
            outs[sampler] = x
            if stats is not None:
                fs.append(float(stats["mean_recomputed_fraction"]))
    em, e2 = statistics.median(times["em"]), statistics.median(times["e2crf"])
    f = statistics.median(fs)
    rms = float(np.sqrt(np.mean((outs["e2crf"] - outs["em"]) ** 2)))
    scale = float(np.sqrt(np.mean(outs["em"] ** 2)))
    res = {"checkpoint": str(path), "steps": args.steps, "batch_size": args.batch_size,
           "num_samples": args.num_samples, "em_seconds": em, "e2crf_seconds": e2, "speedup": em / e2,
           "recomputed_fraction": f, "flop_ideal": 1.0 / f, "achieved_of_ideal": (em / e2) * f,
           "paired_rms_dev": rms, "sample_rms": scale,
           "e2crf": "uncached" if e2cfg is None else e2cfg.describe()}
    print("| sampler | median wall s | speedup | f | 1/f | achieved of 1/f | paired RMS dev. |")
    print("|---|---|---|---|---|---|---|")
    print(f"| em (uncached) | {em:.2f} | 1.00x | 1.00 | 1.00 | – | 0 |")
    print(f"| e2crf ({res['e2crf']}) | {e2:.2f} | {em / e2:.2f}x | {f:.3f} | {1 / f:.2f} | "
          f"{res['achieved_of_ideal']:.0%} | {rms:.4f} (sample RMS {scale:.3f}) |")
    return res


def _front(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.evaluation.front import DEFAULT_SPECS, parse_spec, run_front

    if args.out is None:
        raise UsageError("--front needs --out DIR (where samples, front.json, front.md and front.png go)")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} exists and is not a folder")
    specs = list(args.specs) if args.specs else list(DEFAULT_SPECS)
    for s in specs:
        parse_spec(s)  # every spec checked before any sampling starts
    model = load_checkpoint(path, map_location=_check_device(args.device))
    res = run_front(model, args.out, specs, num_samples=args.num_samples or 512, batch_size=args.batch_size,
                    seed=args.seed + 1, ref_seed=args.seed, batch1=args.batch1, progress=args.progress)
    print(Path(args.out, "front.md").read_text())
    return res


# ----------------------------------------------------------------------------- main

COMMANDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "demo": cmd_demo,
    "benchmark": cmd_benchmark, "calibrate": cmd_calibrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyfdc`` script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad arguments
    from pyfdc.core.checkpoint import CheckpointError

    world, code = distributed.World(), 0
    try:
        if args.command in DISTRIBUTED_COMMANDS:
            world, device = distributed.join(args.device)  # torchrun's group, or one process
            args.device = str(device)
        elif distributed.launched_size() > 1:
            raise UsageError(f"'pyfdc {args.command}' runs in one process; only {' and '.join(DISTRIBUTED_COMMANDS)} "
                             "run under torchrun")
        args.world = world
        if not world.is_main:
            set_quiet(True)
            args.progress = False
        COMMANDS[args.command](args)
        distributed.barrier(world)  # every rank is done with the group before any leaves it
    except KeyboardInterrupt:
        _echo(f"pyfdc {args.command}: interrupted")
        code = 130
    except (UsageError, CheckpointError, ValueError, TypeError, FileExistsError, FloatingPointError,
            FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        if os.environ.get("PYFDC_DEBUG"):
            raise
        _echo(f"pyfdc {args.command}: error: {exc}")
        code = 2
    finally:
        distributed.leave(world)
    if world.active:
        distributed.exit_now(code)  # a torchrun rank ends here, without interpreter finalization
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
