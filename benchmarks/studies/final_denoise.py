"""Does the last EM step leave noise in the frequency model's samples? (issue 24, sampling side)

Per dataset, the suite's frequency model sampled twice with the same seed and noise: plain uncached EM
(the last step returns the EM mean at ``t_eps``) and EM whose last step is replaced by the one-shot
denoise ``x̂0 = (z − σ(t) ε̂(z, t)) / α(t)`` at the last grid time ``t`` (Tweedie's estimate). Roughness
(mean |Δx|) is compared with the train split's own validation series (no held-out data).

    python benchmarks/studies/final_denoise.py --suite runs/suite --datasets gunpoint ecg --num-samples 64
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from suite_data import load_suite_dataset, znorm_like  # noqa: E402


@torch.no_grad()
def sample(model, n: int, steps: int, seed: int, denoise_last: bool) -> np.ndarray:
    from pyfdc.sampling.solvers import NoiseStream, _grid, network_eps_fn

    net, tr, sde = model.net, model.transform, model.sde
    net.eval()
    mask = tr.mask(device=net.mask.device, dtype=net.mask.dtype)
    eps_fn = model.sampling_eps_fn(network_eps_fn(net))
    stream = NoiseStream(seed, torch.arange(n), (tr.num_tokens, tr.token_dim), mask)
    z = stream()
    ts = _grid(sde, steps)
    for i in range(steps):
        t, dt = ts[i], ts[i] - ts[i + 1]
        beta, sigma = sde.beta_float(t), sde.marginal_float(t)[1]
        eps = eps_fn(z, torch.full((n,), t, dtype=z.dtype), i)
        if denoise_last and i == steps - 1:
            a, s = sde.marginal_float(t)
            z = (z - s * eps * mask) / a
            break
        z = z.mul(1.0 + 0.5 * beta * dt).addcmul_(eps, mask, value=-beta * dt / sigma)
        if i < steps - 1:
            z.add_(stream(), alpha=(beta * dt) ** 0.5)
    return model.decode_samples(z).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="runs/suite")
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--num-samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.training.config import split_indices

    print("| dataset | last step | roughness generated / validation |")
    print("|---|---|---|")
    for name in args.datasets:
        ds = load_suite_dataset(name)
        _, val_idx = split_indices(len(ds.train), 0.1, 0)
        val = ds.train[val_idx]
        model = load_checkpoint(Path(args.suite) / name / "freq")
        for last in (False, True):
            x = znorm_like(ds, sample(model, args.num_samples, args.steps, 0, last))
            r = float(np.abs(np.diff(x, axis=1)).mean())
            rv = float(np.abs(np.diff(val, axis=1)).mean())
            print(f"| {name} | {'one-shot denoise' if last else 'EM mean'} | {r:.4f} / {rv:.4f} |", flush=True)


if __name__ == "__main__":
    main()
