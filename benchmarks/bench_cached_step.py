"""Wall time of one cached E2-CRF step vs one uncached step, and the share of the FLOP ideal reached.

For each network config (small, paper), batch size and budget fraction f, one process times, side by
side after warm-up (medians of ``--repeats`` runs of ``--steps`` steps each):

* ``uncached``: the plain forward ``net(z, t)``, eager and ``torch.compile``-d;
* ``budget``: :meth:`pyfdc.e2crf.step.CachedStep.sparse` with k = ⌈f·N'⌉ tokens per sample
  (per-sample drift sets, band K and 2 probes), eager and compiled;
* ``gen-1``: the first-generation variable-set step (the paper's variable-set step, kept as the test reference ``tests/paper_step.py``) with
  per-sample sets of the same mean size (sizes spread ±50% over the batch, as drift sets are).

The FLOP ideal of a step that recomputes k of N' tokens is N'/k (every token-layer op — QKV,
out-projection, FFN, attention rows — costs the same per recomputed row); "of ideal" is the
measured speedup over the uncached step of the same mode divided by N'/k. Random weights: timing
does not depend on training. Results: ``benchmarks/results/cached_step_<tag>.{json,md}``.

    python benchmarks/bench_cached_step.py --threads 1 --tag cpu1
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from pyfdc.e2crf.step import CachedStep as BudgetForward

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from paper_step import CachedForward  # noqa: E402  (test-only reference of the paper's variable sets)
from pyfdc.core.score_net import ModelConfig, ScoreTransformer

T, C, K, P = 94, 2, 4, 2


def _time(fn, steps: int, repeats: int) -> float:
    fn()
    fn()                                   # warm-up (and compilation)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            fn()
        runs.append((time.perf_counter() - t0) / steps)
    return statistics.median(runs)


def _gen1_inputs(B: int, k: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ascending sets around size k (band always in), padded with -1."""
    sizes = [max(K + 1, min(T, round(k * s))) for s in torch.linspace(0.5, 1.5, B).tolist()] if B > 1 else [k]
    idx = torch.full((B, T), -1)
    for b, n in enumerate(sizes):
        rest = torch.randperm(T - K - 1, generator=g)[: n - K - 1] + K + 1
        idx[b, :n] = torch.cat([torch.arange(K + 1), rest]).sort().values
    return idx, torch.tensor(sizes)


def bench(config: str, B: int, fractions: list[float], steps: int, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    cfg = getattr(ModelConfig, config)(T, C)
    net = ScoreTransformer(cfg).eval()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(B, T, C, generator=g)
    t = torch.full((B,), 0.5)
    with torch.no_grad():
        compiled_net = torch.compile(net, fullgraph=True, dynamic=False)
        unc = {"eager": _time(lambda: net(z, t), steps, repeats),
               "compiled": _time(lambda: compiled_net(z, t), steps, repeats)}
    rows = []
    for f in fractions:
        k = max(K + 1 + P, math.ceil(f * T))
        probes = torch.stack([torch.randperm(T - K - 1, generator=g)[:P] + K + 1 for _ in range(B)])
        alpha = torch.full((B,), 0.05)
        row = {"config": config, "batch": B, "f": k / T, "k": k, "uncached_eager_ms": 1e3 * unc["eager"],
               "uncached_compiled_ms": 1e3 * unc["compiled"]}
        for mode in ("eager", "compiled"):
            fwd = BudgetForward(net, B, T, C, k=k, K=K, num_probes=P, tau0=1.0, eps=1e-6, compile=mode == "compiled")
            fwd.refresh(z, t)
            zz = z + 0.05 * torch.randn(B, T, C, generator=g)   # drift, so the ranking has work to do
            sec = _time(lambda: fwd.sparse(zz, t, probes, alpha), steps, repeats)
            row[f"budget_{mode}_ms"] = 1e3 * sec
            row[f"budget_{mode}_speedup"] = unc[mode] / sec
            row[f"budget_{mode}_of_ideal"] = unc[mode] / sec * k / T
        old = CachedForward(net, B, T, C, max_probes=P)
        full = torch.arange(T).expand(B, T).contiguous()
        old(z, t, full, torch.full((B,), T), None, torch.zeros(B), 1e-6)
        idx, count = _gen1_inputs(B, k, g)
        kk = count.float().mean().item()
        old_probes = torch.full((B, P), -1)
        sec = _time(lambda: old(z, t, idx, count, old_probes, torch.zeros(B), 1e-6), steps, repeats)
        row["gen1_eager_ms"] = 1e3 * sec
        row["gen1_of_ideal"] = unc["eager"] / sec * kk / T
        rows.append(row)
        print(json.dumps({key: round(v, 3) if isinstance(v, float) else v for key, v in row.items()}), flush=True)
    return rows


def to_markdown(rows: list[dict], header: str) -> str:
    out = [header, "",
           "| config | B | f (k) | uncached ms eager / compiled | budget ms eager / compiled | speedup eager / compiled "
           "| of FLOP ideal eager / compiled | gen-1 ms (of ideal) |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['config']} | {r['batch']} | {r['f']:.2f} ({r['k']}) | {r['uncached_eager_ms']:.2f} / "
            f"{r['uncached_compiled_ms']:.2f} | {r['budget_eager_ms']:.2f} / {r['budget_compiled_ms']:.2f} | "
            f"{r['budget_eager_speedup']:.2f}× / {r['budget_compiled_speedup']:.2f}× | "
            f"{100 * r['budget_eager_of_ideal']:.0f}% / {100 * r['budget_compiled_of_ideal']:.0f}% | "
            f"{r['gen1_eager_ms']:.2f} ({100 * r['gen1_of_ideal']:.0f}%) |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,paper")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--fractions", default="0.1,0.2,0.35,0.5")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    fr = [float(x) for x in args.fractions.split(",")]
    rows = []
    for config in args.configs.split(","):
        for B in (int(b) for b in args.batches.split(",")):
            rows += bench(config, B, fr, args.steps, args.repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"Cached step vs uncached step, torch {torch.__version__}, {args.threads} thread(s), N' = {T}, "
              f"K = {K}, P = {P}; medians of {args.repeats} × {args.steps} steps")
    for name, text in ((f"cached_step_{args.tag}.json", json.dumps({"header": header, "rows": rows}, indent=1)),
                       (f"cached_step_{args.tag}.md", to_markdown(rows, header))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)
    print(to_markdown(rows, header))


if __name__ == "__main__":
    main()
