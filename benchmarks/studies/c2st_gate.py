"""Would a C2ST-gated choice of sampler hold on fresh draws? (issue 23's ``--sampler auto``, a first check)

Per suite dataset, from its saved front (128 vs 128; OSULeaf 64): the fastest sampler (median batch time)
whose C2ST against the EM-1000 reference is within ``0.5 + 1.96·sqrt(0.25 / (2n))`` — what a C2ST shadow test
at n series per side would pick. Then that choice drawn again with a fresh seed (``--seed``, n series) and
scored against the same reference: does the choice keep the distribution on draws it was not chosen on?

    python benchmarks/studies/c2st_gate.py --suite runs/suite --seed 3
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import torch


def _spec(name: str):
    """A front spec, written by this or an older pyfdc (``mode=...`` specs are mapped by the config's parser)."""
    from pyfdc.e2crf import E2CRFConfig
    from pyfdc.evaluation.front import SamplerSpec, parse_spec

    m = re.match(r"^e2crf\((.*)\):(\d+)$", name)
    if m and "mode=" in m.group(1):
        opts = dict(kv.split("=", 1) for kv in m.group(1).split(","))
        opts = {k: (float(v) if k in ("tau0", "budget") else v) for k, v in opts.items()}
        cfg = E2CRFConfig.from_dict(opts)
        if cfg is None:
            return SamplerSpec("em", int(m.group(2)))
        base = E2CRFConfig()
        return SamplerSpec("e2crf", int(m.group(2)), tuple(
            (k, v) for k, v in cfg.to_dict().items() if v != getattr(base, k) and k != "tau0"))
    return parse_spec(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="runs/suite", type=Path)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--datasets", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.evaluation.front import run_sampler
    from pyfdc.evaluation.quality import c2st_report

    print("| dataset | chosen (fastest within the gate) | speedup vs EM-1000 | C2ST at choice | gate | C2ST, fresh seed |")
    print("|---|---|---|---|---|---|")
    for folder in sorted(p for p in args.suite.iterdir() if (p / "front" / "front.json").is_file()):
        if args.datasets and folder.name not in args.datasets:
            continue
        front = json.loads((folder / "front" / "front.json").read_text())
        n = front["num_samples"]
        gate = 0.5 + 1.96 * math.sqrt(0.25 / (2 * n))
        rows = sorted(front["rows"][1:], key=lambda r: r["batch_seconds"])
        chosen = next((r for r in rows if r["c2st"]["headline"] <= gate), None)
        if chosen is None:
            print(f"| {folder.name} | EM-1000 (nothing faster passes) | 1.0× | – | {gate:.3f} | – |", flush=True)
            continue
        ref = np.load(folder / "front" / "samples" / "reference" / "em_1000.npy")
        model = load_checkpoint(folder / "freq")
        with torch.inference_mode():
            run = run_sampler(model, _spec(chosen["sampler"]), n, front["batch_size"], args.seed)
        fresh = c2st_report(run.x, ref, seed=args.seed)["headline"]
        print(f"| {folder.name} | {chosen['sampler']} | {chosen['speedup_vs_em1000']:.1f}× | "
              f"{chosen['c2st']['headline']:.3f} | {gate:.3f} | {fresh:.3f} |", flush=True)


if __name__ == "__main__":
    main()
