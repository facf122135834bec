"""``pyfdc demo``: the shipped model (or one trained here), uncached vs E2-CRF, evaluated against held-out beats."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pyfdc.cli.draw import draw_samples
from pyfdc.cli.io import SAMPLES_FILE, STATS_FILE, TINY_MODEL, _echo, _save_npy, _write_json
from pyfdc.outdir import OutputSet

from pyfdc.cli.evaluate import evaluate_samples


DEMO_OUTPUTS = ("model", "samples_*", "eval_*", "demo_results.md", "demo_quality.json")


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo into a staged copy of ``--out`` and commit it whole (:mod:`pyfdc.outdir`)."""
    with OutputSet(args.out, args.overwrite, DEMO_OUTPUTS, "pyfdc demo") as claim:
        result = _demo(args, claim.stage)
        claim.commit()
    return result


def _demo(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from pyfdc.data import load_dataset
    from pyfdc.training.trainer import TrainConfig, train

    dataset = load_dataset("ecg")
    if args.minutes is None and not args.tiny:
        from pyfdc.core.checkpoint import load_checkpoint
        from pyfdc.pretrained import pretrained_path

        path = pretrained_path("ecg_small_freq")
        _echo(f"[1/4] loading the shipped small model ({path})")
        model = load_checkpoint(path)
        summary = model.meta.get("extra", {}).get("training", {})
        trained = f"shipped model trained {summary.get('epochs_run', '?')} epochs " \
                  f"({summary.get('wall_seconds', float('nan')):.0f} s)"
    else:
        minutes = 1.5 if args.minutes is None else args.minutes
        _echo(f"[1/3] training the {'tiny' if args.tiny else 'small'} model for <= {minutes} min "
              f"on {dataset.train.shape[0]} ECG beats")
        cfg = TrainConfig(epochs=args.epochs, warmup_epochs=round(0.1 * args.epochs), seed=args.seed,
                          max_minutes=minutes)
        result = train(dataset, out / "model", model_config=dict(TINY_MODEL) if args.tiny else "small",
                       train_config=cfg, progress=args.progress, overwrite=args.overwrite)
        model = result.model
        trained = f"model trained here {result.epochs_run} epochs ({result.wall_seconds:.0f} s)"
    rows = []
    from pyfdc.e2crf.calibrate import describe, model_calibration
    from pyfdc.evaluation.quality import data_report

    # E2-CRF's default: this model's calibration for the step count (shipped beside the shipped model)
    cal = model_calibration(model, args.steps, progress=args.progress, say=lambda line: _echo(f"      e2crf: {line}"))
    preset, what = cal.config, describe(cal)
    runs: list[tuple[str, str, Any]] = [("em", "em", model), ("e2crf", "e2crf", model)]
    if args.minutes is None and not args.tiny:  # the time-domain baseline shipped beside it (benchmarks/RESULTS.md)
        from pyfdc.core.checkpoint import load_checkpoint
        from pyfdc.pretrained import pretrained_path

        runs.append(("em_time", "em", load_checkpoint(pretrained_path("ecg_small_time"))))
    reports = {}
    for i, (name, sampler, m_run) in enumerate(runs):
        label = f"sampler {sampler}" + (" on the time-domain model" if name == "em_time" else "")
        _echo(f"[{2 + i}/{1 + len(runs)}] sampling {args.num_samples} series, {args.steps} steps, {label}"
              + (f" (this model's calibration for {args.steps} steps: {what})" if sampler == "e2crf" else ""))
        samples, stats, wall = draw_samples(m_run, sampler, args.num_samples, args.steps, 64,
                                            args.seed, args.progress, preset)
        sdir = out / f"samples_{name}"
        sdir.mkdir(exist_ok=True)
        _save_npy(sdir / SAMPLES_FILE, samples)
        if stats is not None:
            _write_json(sdir / STATS_FILE, stats)
        evaluate_samples(samples, dataset, out / f"eval_{name}", 2000, args.seed, sdir if stats is not None else None)
        reports[name] = data_report(samples, dataset.train, dataset.test, repeats=args.c2st_repeats,
                                    seed=args.seed, gaussian=i == 0)
        f = stats["mean_recomputed_fraction"] if stats else 1.0
        shown = "em (time-domain model)" if name == "em_time" else sampler
        rows.append((shown, wall, f, reports[name]["generated"]))
    table = _demo_table(rows, reports["em"], dataset, trained, args)
    print(table)
    from pyfdc._io import atomic_write_text

    atomic_write_text(out / "demo_results.md", table + "\n")
    _write_json(out / "demo_quality.json", reports)
    return {"table": table, "quality": reports}


def _demo_table(rows: list[tuple[str, float, float, dict[str, Any]]], first: dict[str, Any], dataset: Any,
                trained: str, args: argparse.Namespace) -> str:
    """Markdown: each sampler's speed and its C2ST against the held-out beats, beside the floors."""
    from pyfdc.evaluation.quality import _wilson

    n = min(len(dataset.test), args.num_samples)
    lo, hi = _wilson(n, 2 * n)  # the null's 95% interval around 0.5 at this size
    lines = [f"C2ST against {len(dataset.test)} held-out beats (accuracy of a classifier telling the sets apart: "
             f"0.5 = indistinguishable; mean ± sd over {args.c2st_repeats} subsamples of {n} per side, the larger "
             f"of trees / linear; at this size chance alone spans {lo:.2f}-{hi:.2f}); {trained}", "",
             "| set | wall s | speedup vs em | recomputed f | C2ST vs held-out | roughness mean abs(dx) |",
             "|---|---|---|---|---|---|"]
    em_wall = rows[0][1]
    refs = [("train split (the data floor)", first["floor_train"]), ("Gaussian fitted to train", first["gaussian"])]
    for name, wall, f, rep in [*rows, *((r, None, None, q) for r, q in refs)]:
        c = rep["c2st"]
        sd = c[c["headline_classifier"]]["sd"]
        nums = ("–",) * 3 if wall is None else (f"{wall:.1f}", f"{em_wall / wall:.2f}x", f"{f:.2f}")
        lines.append(f"| {name} | {' | '.join(nums)} | {c['headline']:.3f} ± {sd:.3f} | {rep['shape']['roughness']:.4f} |")
    lines.append(f"| held-out beats | – | – | – | – | {first['shape_heldout']['roughness']:.4f} |")
    return "\n".join(lines)
