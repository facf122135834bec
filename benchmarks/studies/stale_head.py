"""Issue 23: how much does reusing the time head's correction for ``m`` steps alone change EM samples?

    OMP_NUM_THREADS=1 python benchmarks/studies/stale_head.py [--checkpoint DIR] [--periods 2 4 10 50]

EM-1000 through the cache with every token recomputed (budget 1: the transformer exact on every step) and the
time-domain head run every ``m`` steps, on every refresh (R = 50) and on the last 5% (the calibration's tail),
adding its last correction in between; the same noise for every ``m``. Prints, against ``m = 1`` (the head on
every step), the largest standardised statistic shift (:func:`pyfdc.e2crf.shadow.statistic_shift`, the
calibration's gate) and the median paired deviation: the error head reuse adds before any cache error.
"""
from __future__ import annotations

import argparse

import torch


def sample(model, every: int, n: int, steps: int = 1000, seed: int = 7):
    """EM with every token recomputed (budget 1) and the head every ``every`` steps, its 5% tail and refreshes."""
    from pyfdc.e2crf import E2CRFConfig
    from pyfdc.sampling.sampler import Sampler

    cfg = E2CRFConfig(budget=1.0, tail=0.05, head_every=every, warn_refresh=False, feedback=False)
    with torch.inference_mode():
        return Sampler(model, "em", cache=cfg).sample(n, steps=steps, seed=seed, progress=False).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--periods", type=int, nargs="+", default=[2, 4, 10, 50])
    ap.add_argument("--num-samples", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.cli.args import checkpoint_dir
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf.shadow import paired_deviation, statistic_shift
    from pyfdc.pretrained import pretrained_path

    model = load_checkpoint(checkpoint_dir(args.checkpoint) if args.checkpoint else pretrained_path())
    if model.net.time_head is None:
        raise SystemExit("this model has no time-domain head")
    ref = sample(model, 1, args.num_samples)
    print("| head every m steps | largest shift (statistic) | median paired deviation |\n|---|---|---|")
    for m in args.periods:
        x = sample(model, m, args.num_samples)
        s = statistic_shift(x, ref)
        top = max(s, key=s.get)
        print(f"| {m} | {s[top]:.3f} ({top}) | {paired_deviation(x, ref)['median']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
