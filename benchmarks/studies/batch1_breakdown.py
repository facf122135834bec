"""Issue 23, batch 1: where a compiled step's time goes, full vs cached, one series at a time.

    OMP_NUM_THREADS=1 python benchmarks/studies/batch1_breakdown.py [--checkpoint DIR] [--budget 0.2 [--head-every 4]]

Each part is compiled on its own (``fullgraph=True``) and timed in interleaved rounds (median of the
rounds' per-call means), so the table reads as a cost model of one step:

* ``full forward``: the network as uncached EM calls it;
* ``cached step``: :meth:`CachedStep.sparse` at the budget (band, probes, drift ranking, K/V scatter,
  the gaussian cached output, the head) — what E2-CRF runs on ~93% of its steps;
* its parts: the embedding, the transformer layers over every token vs over the budget's rows, the output
  projection and the time-domain head (``net.finish``), which run on every token in both;
* ``E2-CRF step as the sampler runs it``: :class:`E2CRFPolicy` called on a cached step (the probe draw, the
  Eq. 14 step size, the cached step, the event intensity, the warn flags), without and with the per-step
  statistics the sampler records (its :class:`StepRecorder`);
* ``clip + EM update``: the support clip and the solver's update, paid by both.

The last line is E2-CRF's batch-1 speedup at 1,000 steps that these parts add up to: every step pays the clip
and the update, the cached steps pay the E2-CRF step with its statistics, and the refreshes (every ``R`` steps
and the tail) pay a full forward; and the same without the policy's own cost (the cached step alone).
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
    ap.add_argument("--head-every", type=int, default=None, help="with --budget: the time head's period (default 1)")
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
    from pyfdc.sampling.stats import StepRecorder

    model = load_checkpoint(checkpoint_dir(args.checkpoint) if args.checkpoint else pretrained_path())
    net, tr = model.net.eval(), model.transform
    cfg = (E2CRFConfig(budget=args.budget, tail=0.05, head_every=args.head_every) if args.budget is not None
           else calibrated_config(model, 1000, "em", progress=False))
    if cfg is None:
        raise SystemExit("this model's calibration samples uncached at 1,000 steps: give --budget")
    binding = E2CRFBinding(model, cfg.for_model(model), compile=True, steps=1000)
    policy = binding.batch(torch.arange(1), 0, None)   # one policy: a second would share (and reset) its cache
    recorder = StepRecorder(1000, tr.num_tokens)
    fwd = policy.fwd
    cached_i = 7   # a cached step: not a multiple of R, before the tail (the first call, a refresh, is warm-up)
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

    every = binding.config.head_period

    def run_policy(acc: Any, head: bool = True) -> None:
        policy.acc = acc
        policy.last_head = cached_i - every if head else cached_i   # the head due, or run on this very step
        policy(z, t, cached_i)

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
        "E2-CRF step as the sampler runs it, no statistics": lambda: run_policy(None),
        "E2-CRF step as the sampler runs it, with its statistics": lambda: run_policy(recorder),
        **({"  the same, the time head's last correction reused": lambda: run_policy(recorder, head=False)}
           if fwd.reuse_head else {}),
        "clip + EM update (eager)": clip_and_update,
    }
    dense = [0]
    masked = fwd.masked
    fwd.masked = lambda *a: dense.__setitem__(0, dense[0] + 1) or masked(*a)   # a warn refresh is a dense step
    with torch.inference_mode():
        us = _time(parts, args.rounds, args.calls)
    if dense[0]:
        raise SystemExit(f"{dense[0]} warn refreshes ran inside the timed policy calls: the figures are not of cached steps")
    print(f"batch 1, one thread, {tr.num_tokens} tokens, budget f {cfg.budget:g} (k = {fwd.k}), tail {cfg.tail:g}, "
          f"time head every {every} steps; "
          f"median of {args.rounds} rounds x {args.calls} calls\n")
    print("| part | µs per call |\n|---|---|")
    for k, v in us.items():
        print(f"| {k} | {v:.0f} |")
    tail = binding.config.tail_steps(1000)
    full_steps = tail + sum(1 for i in range(1000 - tail) if i % cfg.R == 0)
    o, full = us["clip + EM update (eager)"], us["full forward"]
    em = 1000 * (full + o)
    as_run = us["E2-CRF step as the sampler runs it, with its statistics"]
    if fwd.reuse_head:   # one cached step in `every` runs the head
        as_run = (as_run + (every - 1) * us["  the same, the time head's last correction reused"]) / every
    for name, cached in (("as run", as_run), ("cached step alone (no policy cost, the head on every step)",
                                              us["cached step"])):
        e2 = full_steps * (full + o) + (1000 - full_steps) * (cached + o)
        print(f"\n1,000 steps ({full_steps} full), {name}: EM {em / 1e6:.2f} s, E2-CRF {e2 / 1e6:.2f} s per series "
              f"-> {em / e2:.2f}x", end="")
    print()


if __name__ == "__main__":
    main()
