"""Where generated beats are rough: mean |Δx| and high-pass RMS per time segment, generated vs training beats.

Training beats only (no held-out data). Generated with DPM-Solver++(2M), 50 steps (on the front it is
0.521 against EM-1000), 64 series, seed 0, one thread.

    python benchmarks/studies/roughness_ecg.py [--checkpoint DIR] [--cut 30] [--segment 15]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.data import load_dataset
from pyfdc.pretrained import pretrained_path
from pyfdc.sampling.sampler import Sampler


def high_pass(x: np.ndarray, cut: int) -> np.ndarray:
    f = np.fft.rfft(x, axis=1)
    f[:, :cut] = 0
    return np.fft.irfft(f, n=x.shape[1], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--num-samples", type=int, default=64)
    ap.add_argument("--cut", type=int, default=30, help="high-pass: drop rFFT bins below this")
    ap.add_argument("--segment", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint or pretrained_path())
    real = load_dataset(model.meta.get("dataset") or "ecg").train[..., 0]
    gen = Sampler(model, "dpm2m").sample(args.num_samples, steps=50, progress=False).numpy()[..., 0]
    dg, dr = np.abs(np.diff(gen, axis=1)).mean(0), np.abs(np.diff(real, axis=1)).mean(0)
    hg, hr = high_pass(gen, args.cut), high_pass(real, args.cut)
    print(f"| samples | mean abs dx gen | real | high-pass RMS gen | real |\n|---|---|---|---|---|")
    for lo in range(0, real.shape[1] - 1, args.segment):
        hi = min(lo + args.segment, real.shape[1] - 1)
        if np.abs(real[:, lo:hi]).max() == 0 and np.abs(gen[:, lo:hi]).max() == 0:
            continue
        print(f"| {lo}-{hi} | {dg[lo:hi].mean():.4f} | {dr[lo:hi].mean():.4f} | "
              f"{np.sqrt((hg[:, lo:hi] ** 2).mean()):.4f} | {np.sqrt((hr[:, lo:hi] ** 2).mean()):.4f} |")
    print(f"| all | {dg.mean():.4f} | {dr.mean():.4f} | {np.sqrt((hg ** 2).mean()):.4f} | {np.sqrt((hr ** 2).mean()):.4f} |")


if __name__ == "__main__":
    main()
