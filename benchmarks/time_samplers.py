"""Wall time of samplers side by side: one process, warm-up, interleaved rounds, median per sampler.

    python benchmarks/time_samplers.py --checkpoint ecg_small_time --rounds 2 em:250 em:150 \
        "e2crf(budget=0.5,K=0):250"

Each round times one batch of ``--batch-size`` series per spec (the front's own draw); the order is
rotated every round so no sampler always runs first. Prints seconds per batch and the ratio to the
first spec.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from pyfdc.evaluation import front as F
from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.cli.args import checkpoint_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("specs", nargs="+")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(checkpoint_dir(args.checkpoint))
    specs = [F.parse_spec(s) for s in args.specs]
    for sp in specs:
        F._draw(model, F.SamplerSpec(sp.kind, 3, sp.options), args.batch_size, 0, 0)
    secs: dict[str, list[float]] = {sp.name: [] for sp in specs}
    with torch.inference_mode():
        for r in range(args.rounds):
            for sp in specs[r % len(specs):] + specs[:r % len(specs)]:
                t0 = time.perf_counter()
                F._draw(model, sp, args.batch_size, r, 0)
                secs[sp.name].append(time.perf_counter() - t0)
                print(f"round {r} {sp.name}: {secs[sp.name][-1]:.2f} s", flush=True)
    base = statistics.median(secs[specs[0].name])
    print(f"\n| sampler | s / batch of {args.batch_size} (median of {args.rounds}) | all rounds | time / {specs[0].name} |")
    print("|---|---|---|---|")
    for name, v in secs.items():
        print(f"| {name} | {statistics.median(v):.2f} | {', '.join(f'{x:.1f}' for x in v)} | {statistics.median(v) / base:.2f} |")


if __name__ == "__main__":
    main()
