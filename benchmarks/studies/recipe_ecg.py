"""Model-quality comparison of trained checkpoints on the *validation* side of the train split (issue 10).

Recipes are chosen here, never on the held-out split: each checkpoint's own (fit, val) split of the
training series is rebuilt from its train config, and generated series are compared by C2ST
(:func:`pyfdc.evaluation.quality.data_report`) with (a) the validation beats (small: 37 on the embedded ECG)
and (b) the fit beats the model trained on (larger, so sharper, but not unseen). The data floor
there is fit vs val; the Gaussian is fitted to the fit split. Samples are cached in ``--out``.

    python benchmarks/studies/recipe_ecg.py --out bench_out/recipe --num-samples 256 \
        --checkpoint freq_token=runs/A_freq_token --checkpoint freq_channel=runs/C_freq_channel

``NAME=DIR,noclip`` samples that checkpoint with its support clip off (``pyfdc.core.support``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pyfdc._io import atomic_write_text
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.data import load_dataset
from pyfdc.evaluation.quality import data_report
from pyfdc.sampling.sampler import Sampler
from pyfdc.training.trainer import split_indices


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=DIR")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--num-samples", type=int, default=256)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--sampler", choices=("em", "dpm2m"), default="em",
                   help="uncached sampler (dpm2m: a cheap proxy for EM-1000 on large models; same for every row)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset("ecg")
    rows = {}
    for item in args.checkpoint:
        name, _, path = item.partition("=")
        path, _, option = path.partition(",")
        if option not in ("", "noclip"):
            p.error(f"--checkpoint {item}: the only option after ',' is 'noclip'")
        model = load_checkpoint(path)
        model.clip = option != "noclip"
        tc = model.meta["extra"]["training"]["train_config"]
        fit_idx, val_idx = split_indices(len(ds.train), tc["val_fraction"], tc["seed"])
        fit, val = ds.train[fit_idx], ds.train[val_idx]
        cache = args.out / f"{name}_{args.sampler}{args.steps}_n{args.num_samples}.npy"
        if cache.is_file():
            x = np.load(cache)
        else:
            x = Sampler(model, args.sampler).sample(args.num_samples, args.steps, 64, args.seed).numpy()
            np.save(cache, x)
        rows[name] = {"vs_val": data_report(x, fit, val, repeats=args.repeats, seed=args.seed),
                      "vs_fit": data_report(x, val, fit, repeats=1, seed=args.seed, gaussian=True)}
        v, f = rows[name]["vs_val"], rows[name]["vs_fit"]
        print(f"{name}: C2ST vs val {v['generated']['c2st']['headline']:.3f} (floor fit-vs-val "
              f"{v['floor_train']['c2st']['headline']:.3f}, Gaussian {v['gaussian']['c2st']['headline']:.3f}); "
              f"vs fit {f['generated']['c2st']['headline']:.3f} (hgb {f['generated']['c2st']['hgb']['mean']:.3f}, "
              f"Gaussian {f['gaussian']['c2st']['headline']:.3f}); shape {v['generated']['shape']} "
              f"(val {v['shape_heldout']}); bands vs val {v['generated']['band_error']}", flush=True)
    atomic_write_text(args.out / "recipe.json", json.dumps(rows, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    sys.exit(main())
