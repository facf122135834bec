"""E2-CRF's default (the model's own calibration) at 1,000 steps on a suite model with the time-domain head:
speedup over uncached EM-1000 in one process (one batch of 64 each, after a warm-up), and the C2ST of 128
cached series against the model's seed-0 EM-1000 set (``em1000_seed0.npy``, drawn by the other studies).

    python benchmarks/studies/e2crf_default_head.py --suite runs/suite_head --datasets ecg
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="runs/suite_head", type=Path)
    ap.add_argument("--datasets", nargs="+", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf import E2CRFConfig
    from pyfdc.e2crf.calibrate import describe, model_calibration
    from pyfdc.evaluation.quality import c2st_report
    from pyfdc.sampling.sampler import Sampler

    print("| dataset | default at 1,000 steps | s / batch of 64: EM-1000 / E2-CRF | speedup | C2ST vs EM-1000 (128) |")
    print("|---|---|---|---|---|")
    for name in args.datasets:
        folder = args.suite / name
        model = load_checkpoint(folder / "freq")
        cal = model_calibration(model, 1000, progress=False)
        ref = np.load(folder / "em1000_seed0.npy")[:128]
        em, e2 = Sampler(model, "em"), Sampler(model, "em", cache=E2CRFConfig())
        with torch.inference_mode():
            for s in (em, e2):   # warm-up
                s.sample(4, steps=20, batch_size=4, seed=9, progress=False)
            t0 = time.perf_counter()
            e2x = e2.sample(128, steps=1000, batch_size=64, seed=3, progress=False).numpy()
            t_e2 = (time.perf_counter() - t0) / 2
            t0 = time.perf_counter()
            em.sample(64, steps=1000, batch_size=64, seed=5, progress=False)
            t_em = time.perf_counter() - t0
        c = c2st_report(e2x, ref, seed=3)["headline"]
        print(f"| {name} | {describe(cal)} | {t_em:.1f} / {t_e2:.1f} | {t_em / t_e2:.2f}× | {c:.3f} |", flush=True)


if __name__ == "__main__":
    main()
