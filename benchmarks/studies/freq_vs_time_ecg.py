"""Frequency- vs time-domain diffusion on the embedded ECG: sample quality and sampling throughput.

What it does (issue 3, "What must be shown"):

1. Trains the small config on the half-spectrum tokens ("freq") and, as the baseline, on time
   tokens ("time"), each within ``--minutes`` of wall time (the cosine schedule is fitted to it).
2. Draws ``--num-samples`` series from each with ``--steps`` Euler-Maruyama steps.
3. Reports the sliced Wasserstein distance (time and frequency domain, mean +/- 2 s.e. over the
   projections) to the held-out split, next to (a) the floor: the train split vs held-out, and
   (b) a multivariate Gaussian fitted to the train split.
4. Measures the sampling throughput (series/s at ``--steps`` steps) of the same network fed the
   N' half-spectrum tokens, N time tokens and N chart tokens (Crabbe et al.'s layout).

Full run (about an hour on 2 idle cores: 2 × 15 min training, and 1,000 × 1,000 EM steps take
roughly 10-20 min per model with the small config)::

    PYTHONPATH=. python benchmarks/studies/freq_vs_time_ecg.py --out bench_out/diffusion

Smoke run (about a minute)::

    PYTHONPATH=. python benchmarks/studies/freq_vs_time_ecg.py --quick --out /tmp/bench_quick --overwrite
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyfdc import __version__
from pyfdc._io import atomic_write_text
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.cli import gaussian_baseline, sw_report
from pyfdc.data import load_dataset
from pyfdc.core.model import DiffusionModel
from pyfdc.sampling.sampler import Sampler
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.spectral import make_transform
from pyfdc.training.trainer import TrainConfig, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoints and results")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--reuse", action="store_true", help="reuse checkpoints already in --out (skip training)")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny budget, few samples and steps")
    p.add_argument("--minutes", type=float, default=15.0, help="training budget per model (default: 15)")
    p.add_argument("--epochs", type=int, default=5000, help="epoch cap; the budget usually binds first")
    p.add_argument("--config", choices=("small", "paper"), default="small")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (paper: 1e-3)")
    p.add_argument("--ema", type=float, default=None, metavar="DECAY", help="EMA of the weights (default: off)")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=1000, help="Euler-Maruyama steps")
    p.add_argument("--batch-size", type=int, default=64, help="sampling batch size")
    p.add_argument("--projections", type=int, default=10_000, help="SW projections")
    p.add_argument("--throughput-steps", type=int, default=50, help="EM steps timed per throughput repeat")
    p.add_argument("--repeats", type=int, default=3, help="throughput repeats (median reported)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.epochs = min(args.minutes, 0.25), min(args.epochs, 20)
        args.num_samples, args.steps, args.projections = 32, 20, 500
        args.batch_size, args.throughput_steps, args.repeats = 32, 5, 2
    return args


def train_or_reuse(ds: Any, folder: Path, domain: str, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    if args.reuse and (folder / "config.json").is_file():
        model = load_checkpoint(folder)
        return model, model.meta.get("extra", {}).get("training", {})
    cfg = TrainConfig(epochs=args.epochs, warmup_epochs=max(1, args.epochs // 10), seed=args.seed,
                      max_minutes=args.minutes, lr=args.lr, ema_decay=args.ema)
    print(f"training {domain} ({args.config}) for <= {args.minutes} min ...", file=sys.stderr, flush=True)
    res = train(ds, folder, args.config, transform_kind=domain, train_config=cfg, overwrite=True)
    return res.model, res.summary()


def throughput(kind: str, n: int, m: int, args: argparse.Namespace, net: torch.nn.Module | None = None) -> float:
    """Series/s at ``args.steps`` EM steps, batch ``args.batch_size``: median over repeats after warm-up."""
    tr = make_transform(kind, n, m)
    if net is None:
        factory = ModelConfig.small if args.config == "small" else ModelConfig.paper
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = ScoreTransformer(factory(tr.num_tokens, tr.token_dim))
    sampler = Sampler(DiffusionModel(net, tr), method="em")
    b, k = args.batch_size, args.throughput_steps
    sampler.sample_tokens(b, steps=2, batch_size=b, progress=False)  # warm-up
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        sampler.sample_tokens(b, steps=k, batch_size=b, seed=r, progress=False)
        times.append((time.perf_counter() - t0) / k)
    return b / (statistics.median(times) * args.steps)


def fmt(sw: dict[str, float]) -> str:
    return f"{sw['mean']:.4f} ± {sw['two_se']:.4f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    if out.exists() and any(out.iterdir()) and not (args.overwrite or args.reuse):
        sys.exit(f"bench_diffusion: error: --out {out} is not empty (pass --overwrite or --reuse)")
    if out.exists() and args.overwrite and not args.reuse:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("ecg")
    n, m = ds.length, ds.channels
    res: dict[str, Any] = {
        "dataset": ds.name, "n_train": len(ds.train), "n_heldout": len(ds.test), "N": n, "M": m,
        "config": args.config, "lr": args.lr, "ema": args.ema, "minutes_per_model": args.minutes, "num_samples": args.num_samples,
        "steps": args.steps, "projections": args.projections, "threads": torch.get_num_threads(),
        "seed": args.seed, "quick": args.quick, "pyfdc_version": __version__, "torch": torch.__version__,
        "machine": platform.machine(), "processor": platform.processor(), "rows": {}, "throughput": {},
    }
    rows = res["rows"]
    rows["floor: train split vs held-out"] = {"sw": sw_report(ds.train, ds.test, args.projections, args.seed)}
    gauss = gaussian_baseline(ds.train, args.num_samples, args.seed)
    rows["multivariate Gaussian fitted to train"] = {"sw": sw_report(gauss, ds.test, args.projections, args.seed)}
    for domain, label in (("freq", "frequency-domain diffusion (N' half-spectrum tokens)"),
                          ("time", "time-domain diffusion baseline (N time tokens)")):
        model, summary = train_or_reuse(ds, out / f"model_{domain}", domain, args)
        t0 = time.perf_counter()
        with torch.inference_mode():
            x = Sampler(model, "em").sample(args.num_samples, steps=args.steps,
                                            batch_size=args.batch_size, seed=args.seed).numpy()
        wall = time.perf_counter() - t0
        np.save(out / f"samples_{domain}.npy", x)
        rows[label] = {"sw": sw_report(x, ds.test, args.projections, args.seed), "training": summary,
                       "sampling_seconds": wall, "series_per_second": args.num_samples / wall}
        res["throughput"][f"trained {domain} model, measured end to end"] = args.num_samples / wall
    for kind in ("freq", "time", "chart"):
        tr = make_transform(kind, n, m)
        res["throughput"][f"{kind}: T={tr.num_tokens} tokens of width {tr.token_dim}"] = throughput(kind, n, m, args)

    lines = [f"### Diffusion on the embedded ECG ({len(ds.train)} train / {len(ds.test)} held-out beats, "
             f"N={n}, M={m}){' — QUICK SMOKE RUN, numbers meaningless' if args.quick else ''}", "",
             f"{args.config} config, <= {args.minutes} min training per model, {args.num_samples} samples × "
             f"{args.steps} EM steps, SW₂ with {args.projections} projections (± 2 s.e. over projections), "
             f"{res['threads']} torch threads, torch {torch.__version__}.", "",
             "| model | epochs | SW time | SW freq |", "|---|---|---|---|"]
    for label, row in rows.items():
        ep = row.get("training", {}).get("epochs_run", "")
        lines.append(f"| {label} | {ep} | {fmt(row['sw']['time'])} | {fmt(row['sw']['freq'])} |")
    base = res["throughput"][f"freq: T={n // 2 + 1} tokens of width {2 * m}"]
    lines += ["", f"Sampling throughput at {args.steps} EM steps, batch {args.batch_size} "
              f"(median of {args.repeats} × {args.throughput_steps} timed steps after warm-up):", "",
              "| network input | series/s | vs half-spectrum |", "|---|---|---|"]
    for label, rate in res["throughput"].items():
        lines.append(f"| {label} | {rate:.3f} | {rate / base:.2f}× |")
    table = "\n".join(lines)
    print(table)
    atomic_write_text(out / "results.md", table + "\n")
    atomic_write_text(out / "results.json", json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    main()
