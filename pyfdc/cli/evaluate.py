"""``pyfdc evaluate``: C2ST / SW against held-out data next to the data floor and a Gaussian, and plots."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pyfdc.cli.args import UsageError
from pyfdc.cli.io import EVALUATE_OUTPUTS, METRICS_FILE, SAMPLE_INFO_FILE, SAMPLES_FILE, STATS_FILE, _echo, _write_json
from pyfdc.outdir import OutputSet

C2ST_MIN_SERIES = 5  # one per fold of the 5-fold C2ST


def sw_report(x: Any, y: Any, projections: int, seed: int) -> dict[str, dict[str, float]]:
    """SW2 of ``x`` to ``y`` (both ``(n, N, M)``), time and frequency: mean over projections and
    2 standard errors of that mean (Monte-Carlo spread over the projections, see pyfdc.evaluation.metrics)."""
    from pyfdc.evaluation.metrics import sliced_wasserstein_stats

    out: dict[str, dict[str, float]] = {}
    for domain in ("time", "freq"):
        mean, two_se = sliced_wasserstein_stats(x, y, n_projections=projections, seed=seed, domain=domain)
        out[domain] = {"mean": mean, "two_se": two_se}
    return out


def gaussian_baseline(train_x: Any, n: int, seed: int) -> Any:
    """``n`` draws ``(n, N, M)`` float32 from N(mean, cov) fitted to the flattened train series."""
    from pyfdc.evaluation.quality import gaussian_baseline as draw

    return draw(train_x, n, seed).astype("float32")


def _load_samples(path: Path) -> tuple[Any, Path | None]:
    import numpy as np

    file = path if path.suffix == ".npy" else path / SAMPLES_FILE
    if not file.is_file():
        raise UsageError(f"--samples: {file} not found (expected a folder written by 'pyfdc sample')")
    try:
        arr = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"--samples: {file} is not a readable .npy array ({exc})") from exc
    if arr.ndim != 3:
        raise UsageError(f"--samples: {file} must hold an (S, N, M) array, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise UsageError(f"--samples: {file} contains NaN/Inf")
    stats_dir = file.parent if file.parent.joinpath(STATS_FILE).is_file() else None
    info_file = file.parent / SAMPLE_INFO_FILE
    if stats_dir is not None and info_file.is_file():
        try:
            if json.loads(info_file.read_text()).get("sampler") != "e2crf":
                stats_dir = None            # stats left by an earlier E2-CRF run in the same folder
        except (ValueError, UnicodeDecodeError, AttributeError) as exc:
            raise UsageError(f"--samples: {info_file} is not valid JSON ({exc})") from None
    if stats_dir is not None:
        _read_stats(stats_dir)              # reject a corrupt file before anything is written
    return arr, stats_dir


def _read_stats(stats_dir: Path) -> dict[str, Any]:
    try:
        stats = json.loads((stats_dir / STATS_FILE).read_text())
        if not isinstance(stats, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{stats_dir / STATS_FILE}: corrupt E2-CRF statistics ({exc})") from None
    return stats


def evaluate_samples(samples: Any, dataset: Any, out: Path, projections: int, seed: int,
                     stats_dir: Path | None = None, c2st_repeats: int = 0,
                     reference: Any = None, field_runs: int = 0) -> dict[str, Any]:
    """SW to held-out (+ floor), C2ST vs held-out next to the data floor and a Gaussian (with
    ``c2st_repeats`` > 0), the field's discriminative / predictive scores over ``field_runs`` trainings
    (> 0), C2ST vs a ``reference`` sample set when given, and plots into ``out``; returns the metrics
    dict (also saved as metrics.json)."""
    from pyfdc.evaluation import plots

    test, train = dataset.test, dataset.train
    stats = None if stats_dir is None else _read_stats(stats_dir)   # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    if samples.shape[1:] != test.shape[1:]:
        raise UsageError(f"samples have (N, M) = {tuple(samples.shape[1:])} but dataset "
                         f"{dataset.name!r} has (N, M) = {tuple(test.shape[1:])}")
    metrics: dict[str, Any] = {
        "dataset": dataset.name, "num_samples": int(len(samples)), "num_heldout": int(len(test)),
        "projections": projections, "seed": seed,
        "sw_samples_vs_heldout": sw_report(samples, test, projections, seed),
        "sw_floor_train_vs_heldout": sw_report(train, test, projections, seed),
    }
    few = min(len(samples), len(test)) < C2ST_MIN_SERIES
    skipped = metrics["skipped"] = {}
    if c2st_repeats > 0 and few:
        skipped["c2st"] = f"needs >= {C2ST_MIN_SERIES} series per side (5 folds), got {len(samples)} samples"
    elif c2st_repeats > 0:
        from pyfdc.evaluation.quality import data_report

        metrics["quality_vs_heldout"] = data_report(samples, train, test, repeats=c2st_repeats, seed=seed)
    if field_runs > 0 and few:
        skipped["field_scores"] = f"need >= {C2ST_MIN_SERIES} series per side, got {len(samples)} samples"
    elif field_runs > 0:
        from pyfdc.evaluation.field_scores import discriminative_score, predictive_score

        metrics["field_scores"] = {
            "discriminative": discriminative_score(test, samples, runs=field_runs, seed=seed),
            "predictive": predictive_score(test, samples, runs=field_runs, seed=seed),
            "predictive_train_split": predictive_score(test, train, runs=field_runs, seed=seed)}
    if reference is not None and reference.shape[1:] != samples.shape[1:]:
        raise UsageError(f"--reference has (N, M) = {tuple(reference.shape[1:])}, samples have "
                         f"{tuple(samples.shape[1:])}")
    if reference is not None and min(len(samples), len(reference)) < C2ST_MIN_SERIES:
        skipped["reference"] = (f"the C2ST vs --reference needs >= {C2ST_MIN_SERIES} series per side, got "
                                f"{len(samples)} and {len(reference)}")
    elif reference is not None:
        from pyfdc.evaluation.quality import sampler_report

        metrics["quality_vs_reference"] = sampler_report(samples, reference, seed=seed)["candidate"]
        if reference.shape == samples.shape:
            from pyfdc.e2crf.shadow import paired_deviation, same_noise_pairs

            dev = paired_deviation(samples, reference)
            metrics["quality_vs_reference"]["paired_deviation"] = dev
            # same-noise pairs sit much closer than independent draws, and a twin in the training folds
            # pulls the cross-validated accuracy below 0.5
            metrics["quality_vs_reference"]["same_noise_pairs"] = same_noise_pairs(samples, reference)
    plots.plot_spectral_density(test, samples, out / "spectral_density.png")
    plots.plot_sample_grid(samples, out / "sample_grid.png", real=test)
    if stats is not None:
        plots.plot_e2crf_stats(stats, out / "e2crf_stats.png")
        metrics["e2crf"] = {k: stats.get(k) for k in ("mode", "hit_rate", "mean_recomputed_fraction",
                                                     "refresh_steps", "cache_bytes")}
    _write_json(out / METRICS_FILE, metrics)
    return metrics


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from pyfdc.core.checkpoint import read_config
    from pyfdc.data import load_dataset

    config = read_config(args.checkpoint)
    samples, stats_dir = _load_samples(args.samples)
    data_meta = (config.get("meta") or {}).get("data_file")
    if data_meta is not None:
        from pyfdc.data import reload_from_meta

        dataset = reload_from_meta(data_meta, args.data)
    elif args.data is not None:
        raise UsageError(f"--data: checkpoint {args.checkpoint} was trained on dataset "
                         f"{config.get('dataset')!r}, not on a file")
    elif config.get("dataset") is None:
        raise UsageError(f"checkpoint {args.checkpoint} does not record the dataset it was trained on, so its "
                         "held-out split is unknown")
    else:
        dataset = load_dataset(config["dataset"], root=args.data_root)
    reference = _load_samples(args.reference)[0] if args.reference is not None else None
    with OutputSet(args.out, args.overwrite, EVALUATE_OUTPUTS, "pyfdc evaluate") as claim:
        metrics = evaluate_samples(samples, dataset, claim.stage, args.projections, args.seed, stats_dir,
                                   c2st_repeats=args.c2st_repeats, reference=reference,
                                   field_runs=args.field_scores)
        out = claim.commit()
    sw, floor = metrics["sw_samples_vs_heldout"], metrics["sw_floor_train_vs_heldout"]
    for d in ("time", "freq"):
        _echo(f"SW {d:4s}: samples {sw[d]['mean']:.4f} ± {sw[d]['two_se']:.4f}   "
              f"floor (train) {floor[d]['mean']:.4f} ± {floor[d]['two_se']:.4f}")
    q = metrics.get("quality_vs_heldout")
    if q is not None:
        for name, label in (("generated", "samples"), ("floor_train", "floor (train)"), ("gaussian", "Gaussian")):
            c = q[name]["c2st"]
            _echo(f"C2ST vs held-out, {label:13s}: {c['headline']:.3f} (hgb {c['hgb']['mean']:.3f} ± "
                  f"{c['hgb']['sd']:.3f}, linear {c['linear']['mean']:.3f} ± {c['linear']['sd']:.3f})")
        shape = q["generated"]["shape"]
        _echo("shape: " + ", ".join(f"{k} {v:.4f} (held-out {q['shape_heldout'][k]:.4f})" for k, v in shape.items()))
        _echo("band power vs held-out: " + ", ".join(f"{k} {v:+.0%}" for k, v in q["generated"]["band_error"].items()))
    fs = metrics.get("field_scores")
    if fs is not None:
        d, p, pt = fs["discriminative"], fs["predictive"], fs["predictive_train_split"]
        _echo(f"field scores (weaker than the C2ST; for published tables): discriminative {d['mean']:.3f} ± "
              f"{d['std']:.3f}, predictive {p['mean']:.3f} ± {p['std']:.3f} (train split: {pt['mean']:.3f})")
    r = metrics.get("quality_vs_reference")
    if r is not None:
        c = r["c2st"]
        _echo(f"C2ST vs reference: {c['headline']:.3f} (hgb {c['hgb']['accuracy']:.3f} "
              f"[{c['hgb']['ci_low']:.3f}, {c['hgb']['ci_high']:.3f}], linear {c['linear']['accuracy']:.3f}); "
              "band power: " + ", ".join(f"{k} {v:+.0%}" for k, v in r["band_error"].items()))
        if r.get("same_noise_pairs"):
            _echo(f"warning: --samples and --reference look drawn with the same noise (median paired "
                  f"deviation {r['paired_deviation']['median']:.2f}); the C2ST reads low for such pairs: "
                  "draw the reference with another --seed")
    for what, why in metrics["skipped"].items():
        _echo(f"skipped {what}: {why}; every other metric is reported")
    _echo(f"metrics and plots -> {out}")
    return metrics
