"""Issue 23: how much does reusing the time head's correction for ``m`` steps alone change EM samples?

    OMP_NUM_THREADS=1 python benchmarks/studies/stale_head.py [--checkpoint DIR] [--periods 2 4 10 50]

Uncached EM-1000 (every token through the transformer on every step) whose time-domain head runs every ``m``
steps and on the last 5% (as the calibration's tail), adding its last correction in between; the same noise
for every ``m``. Prints, against ``m = 1`` (the head on every step), the largest standardised statistic shift
(:func:`pyfdc.e2crf.shadow.statistic_shift`, the calibration's gate) and the median paired deviation: the error
head reuse adds before any cache error.
"""
from __future__ import annotations

import argparse

import torch


def sample(model, every: int, n: int, steps: int = 1000, tail: int = 50, seed: int = 7):
    from pyfdc.sampling.solvers import NoiseStream, euler_maruyama

    net, clip, kept = model.net.eval(), model.support_clip(), {}

    def eps_fn(z, t, i):
        tf = net.time_features(t)
        h = net.embed(z, t, tf)
        for blk in net.blocks:
            h = blk(h)
        eps = net.head(h)
        if i % every == 0 or i >= steps - tail:
            kept["delta"] = net.time_head(eps, z, tf, net.mask) - eps
        eps = eps + kept["delta"]
        if net.pin_projector is not None:
            eps = net.pin_projector(eps, z, t)
        return clip(eps, z, t) if clip is not None else eps

    mask = model.mask()
    stream = NoiseStream(seed, torch.arange(n), (model.num_tokens, model.token_dim), mask)
    with torch.inference_mode():
        z = euler_maruyama(eps_fn, model.sde, stream(), mask, steps, stream)
    return model.decode_samples(z).numpy()


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
