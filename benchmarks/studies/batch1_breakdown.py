"""Issue 23, batch 1: where a compiled step's time goes, full vs cached, one series at a time.

    OMP_NUM_THREADS=1 python benchmarks/studies/batch1_breakdown.py [--checkpoint DIR] [--budget 0.2]

Each part is compiled on its own (``fullgraph=True``) and timed in interleaved rounds (median of the
rounds' per-call means), so the table reads as a cost model of one step:

* ``full forward``: the network as uncached EM calls it;
* ``cached step``: :meth:`CachedStep.sparse` at the budget (band, probes, drift ranking, K/V scatter,
  the gaussian cached output, the head) — what E2-CRF runs on ~93% of its steps;
* its parts: the embedding, the transformer layers over every token vs over the budget's rows, the output
  projection and the time-domain head (``net.finish``), which run on every token in both;
* ``policy (eager)``: the per-step work around the cached step (probe draw, Eq. 14 step size, event intensity,
  warn flags);
* ``clip + EM update``: the support clip and the solver's update, paid by both.

The last line is the bound this gives on E2-CRF's batch-1 speedup at 1,000 steps: every step pays the clip and
the update, the cached steps pay the cached step and the policy, and the refreshes (every ``R`` steps and the tail)
pay a full forward.
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import torch


def _time(parts: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    for f in parts.values():      # warm-up (compilation)
        for _ in range(3):
            f()
    us: dict[str, list[float]] = {k: [] for k in parts}
    for _ in range(rounds):
        for k, f in parts.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            us[k].append((time.perf_counter() - t0) / calls * 1e6)
    return {k: statistics.median(v) for k, v in us.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--budget", type=float, default=None, help="default: the model's calibration at 1,000 steps")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from pyfdc.cli.args import checkpoint_dir
    from pyfdc.core.checkpoint import load_checkpoint
    from pyfdc.e2crf import E2CRFConfig
    from pyfdc.e2crf.calibrate import calibrated_config
    from pyfdc.e2crf.layers import run_layers
    from pyfdc.e2crf.policy import E2CRFBinding
    from pyfdc.pretrained import pretrained_path

    model = load_checkpoint(checkpoint_dir(args.checkpoint) if args.checkpoint else pretrained_path())
    net, tr = model.net.eval(), model.transform
    cfg = (E2CRFConfig(budget=args.budget, tail=0.05) if args.budget is not None
           else calibrated_config(model, 1000, "em", progress=False))
    if cfg is None:
        raise SystemExit("this model's calibration samples uncached at 1,000 steps: give --budget")
    binding = E2CRFBinding(model, cfg.for_model(model), compile=True, steps=1000)
    policy = binding.batch(torch.arange(1), 0, None)
    fwd = policy.fwd
    T, C, d = tr.num_tokens, tr.token_dim, net.config.d_model
    gen = torch.Generator().manual_seed(0)
    z, t = torch.randn(1, T, C, generator=gen), torch.full((1,), 0.5)
    eps, h0 = torch.randn(1, T, C, generator=gen), torch.randn(1, T, d, generator=gen)
    hs = torch.randn(1, fwd.k, d, generator=gen)
    idx = torch.randperm(T, generator=gen)[:fwd.k][None]
    kc, vc = torch.zeros_like(fwd.cache.k), torch.zeros_like(fwd.cache.v)
    blocks = list(net.blocks)
    probes, alpha = policy._probes(), policy.intensity.step_size(cfg.tau_safe, cfg.alpha_max)
    clip = model.support_clip()

    def cc(fn: Callable[[], Any]) -> Callable[[], Any]:
        return torch.compile(fn, fullgraph=True, dynamic=False)

    def policy_work() -> None:
        policy._probes()
        policy.intensity.step_size(cfg.tau_safe, cfg.alpha_max)
        r = policy.intensity.update(fwd.feat, fwd.err)
        torch.gt(r, cfg.tau_warn, out=policy.warn_flags[0])
        policy.warn_any[0].copy_(policy.warn_flags[0].any())

    def clip_and_update() -> None:
        e = clip(eps, z, t) if clip is not None else eps
        z.mul(1.001).addcmul_(e, net.mask, value=-0.01).add_(eps, alpha=0.01)

    parts = {
        "full forward": cc(lambda: net(z, t)),
        "cached step": lambda: fwd.sparse(z, t, probes, alpha),
        "  embedding": cc(lambda: net.embed(z, t)),
        "  layers, every token": cc(lambda: run_layers(blocks, h0, kc, vc, None)),
        f"  layers, the budget's {fwd.k} rows": cc(lambda: run_layers(blocks, hs, kc, vc, idx)),
        "  output projection": cc(lambda: net.head(h0)),
        "  time-domain head + pins (finish)": cc(lambda: net.finish(eps, z, t)),
        "policy (eager)": policy_work,
        "clip + EM update (eager)": clip_and_update,
    }
    with torch.inference_mode():
        us = _time(parts, args.rounds, args.calls)
    print(f"batch 1, one thread, {tr.num_tokens} tokens, budget f {cfg.budget:g} (k = {fwd.k}), tail {cfg.tail:g}; "
          f"median of {args.rounds} rounds x {args.calls} calls\n")
    print("| part | µs per call |\n|---|---|")
    for k, v in us.items():
        print(f"| {k} | {v:.0f} |")
    tail = binding.config.tail_steps(1000)
    full_steps = tail + sum(1 for i in range(1000 - tail) if i % cfg.R == 0)
    o = us["clip + EM update (eager)"]
    em = 1000 * (us["full forward"] + o)
    e2 = full_steps * (us["full forward"] + o) + (1000 - full_steps) * (us["cached step"] + us["policy (eager)"] + o)
    print(f"\nbound at 1,000 steps ({full_steps} full steps): EM {em / 1e6:.2f} s, E2-CRF {e2 / 1e6:.2f} s per series "
          f"-> {em / e2:.2f}x (dynamo's guard check, ~0.1-0.2 ms per compiled call, is in both and not counted)")


if __name__ == "__main__":
    main()
