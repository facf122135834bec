"""Batch-1 wall time of front samplers: seconds per series when series are drawn one at a time.

Samplers are batch invariant (noise per sample id; `tests/test_e2crf_budget.py`), so a series drawn alone
is the series the batch-64 front scored: the C2ST of each spec carries over from the front, only
the time changes. One process, 1 thread by default, a warm-up draw per spec, then the median of
``--repeats`` single-series draws (ids 0, 1, …). Results: ``benchmarks/results/batch1_<tag>.{json,md}``.

    python benchmarks/bench_batch1.py --specs em:1000 em:100 dpm2m:25 'e2crf(budget=0.5):250'
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pyfdc.core.checkpoint import load_checkpoint
from pyfdc.evaluation.front import _draw, parse_spec
from pyfdc.pretrained import pretrained_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--specs", nargs="+", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="ecg_small")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint or pretrained_path())
    specs = [parse_spec(s) for s in args.specs]
    rows = []
    with torch.inference_mode():
        for spec in specs:
            _draw(model, spec, 1, 0, 10_000)                      # warm-up (and compilation)
            secs = []
            for j in range(args.repeats):
                t0 = time.perf_counter()
                _draw(model, spec, 1, 0, j)
                secs.append(time.perf_counter() - t0)
            rows.append({"sampler": spec.name, "seconds_per_series": statistics.median(secs)})
            print(json.dumps(rows[-1]), flush=True)
    base = next((r["seconds_per_series"] for r in rows if r["sampler"] == "em:1000"), None)
    lines = [f"Batch-1 seconds per series, {args.threads} thread(s), median of {args.repeats}", "",
             "| sampler | s / series | speedup vs EM-1000 |", "|---|---|---|"]
    for r in rows:
        sp = f"{base / r['seconds_per_series']:.2f}×" if base else "–"
        lines.append(f"| {r['sampler']} | {r['seconds_per_series']:.3f} | {sp} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in ((f"batch1_{args.tag}.json", json.dumps(rows, indent=1)), (f"batch1_{args.tag}.md", "\n".join(lines) + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
