"""DDP training throughput on this machine: 1 vs N processes, and what the gradient all-reduce costs.

The driver starts one ``torchrun --standalone --nproc_per_node=P`` job per (config, P) with this file as
the worker. A worker times the training step of :func:`pyfdc.training.trainer.train` (DSM loss, backward, clip,
AdamW, EMA) on ECG-shaped tokens (N' = 94 tokens of width 2) with a global batch of 64 split over the
ranks, in interleaved rounds of two kinds: a normal DDP step and a step under ``no_sync()`` (no
all-reduce). Medians over rounds, after warm-up. The difference of the two is the all-reduce's cost
per step; a bare ``all_reduce`` of a gradient-sized buffer is timed too. Each process runs
``--threads`` torch threads (default 1, so P processes use P cores); a 1-process row with P threads
is added so the comparison is at equal cores. Results: ``benchmarks/results/ddp_<tag>.{json,md}``.

    python benchmarks/bench_ddp.py --nproc 2 --configs small paper
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

GLOBAL_BATCH = 64


def worker(config: str, rounds: int, steps: int, out: Path) -> None:
    import torch

    from pyfdc import distributed
    from pyfdc.core.score_net import ModelConfig, ScoreTransformer
    from pyfdc.core.sde import VPSDE, dsm_loss
    from pyfdc.core.spectral import make_transform
    from pyfdc.training.loop import _ema_update

    world, _ = distributed.join("cpu")
    tr = make_transform("freq", 187, 1)
    mcfg = getattr(ModelConfig, config)(num_tokens=tr.num_tokens, token_dim=tr.token_dim)
    torch.manual_seed(0)
    net = ScoreTransformer(mcfg, tr.mask())
    ema = ScoreTransformer(mcfg, tr.mask())
    ema.load_state_dict(net.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(net) if world.active else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    sde, mask = VPSDE(), tr.mask()
    per_rank = GLOBAL_BATCH // world.size
    z = torch.randn(per_rank, tr.num_tokens, tr.token_dim) * mask
    gen = torch.Generator().manual_seed(world.rank)

    def step(sync: bool) -> float:
        t0 = time.perf_counter()
        ctx = ddp.no_sync() if (world.active and not sync) else _null()
        with ctx:
            loss = dsm_loss(ddp, z, sde, mask, generator=gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        _ema_update(ema, net, 0.999, 100)
        return time.perf_counter() - t0

    for _ in range(3):
        step(True)
    times: dict[str, list[float]] = {"sync": [], "no_sync": []}
    for _ in range(rounds):
        for kind in ("sync", "no_sync"):
            distributed.barrier(world)
            times[kind].append(statistics.median(step(kind == "sync") for _ in range(steps)))
    n_params = sum(p.numel() for p in net.parameters())
    bare: list[float] = []
    if world.active:
        buf = torch.zeros(n_params)
        for _ in range(5 * rounds):
            distributed.barrier(world)
            t0 = time.perf_counter()
            torch.distributed.all_reduce(buf)
            bare.append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    mine = {"rank": world.rank, "sync_s": med["sync"], "no_sync_s": med["no_sync"],
            "bare_all_reduce_s": statistics.median(bare) if bare else 0.0}
    rows = distributed.all_gather(world, mine)
    if world.is_main:
        slowest = max(r["sync_s"] for r in rows)  # a DDP step ends when the slowest rank's does
        out.write_text(json.dumps({
            "config": config, "params": n_params, "processes": world.size, "threads": torch.get_num_threads(),
            "step_s": slowest, "series_per_s": GLOBAL_BATCH / slowest,
            "no_sync_step_s": max(r["no_sync_s"] for r in rows),
            "all_reduce_overhead_s": slowest - max(r["no_sync_s"] for r in rows) if world.active else 0.0,
            "bare_all_reduce_s": max(r["bare_all_reduce_s"] for r in rows), "ranks": rows,
        }, indent=1))
    distributed.leave(world)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def driver(args: argparse.Namespace) -> None:
    out_dir = Path(args.out)
    tmp = out_dir / f".ddp_{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for config in args.configs:
        for nproc, threads in ((1, args.threads), (1, args.threads * args.nproc), (args.nproc, args.threads)):
            part = tmp / f"{config}_{nproc}_{threads}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                   __file__, "--worker", "--configs", config, "--rounds", str(args.rounds),
                   "--steps", str(args.steps), "--part", str(part)]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            subprocess.run(cmd, check=True, env=env, timeout=3600)
            rows.append(json.loads(part.read_text()))
            part.unlink()
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "ranks"}), flush=True)
    tmp.rmdir()
    import torch

    head = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "cpus": os.cpu_count(),
            "global_batch": GLOBAL_BATCH, "rounds": args.rounds, "steps_per_round": args.steps}
    (out_dir / f"ddp_{args.tag}.json").write_text(json.dumps({**head, "rows": rows}, indent=1))
    lines = [f"# DDP training throughput ({head['date']}, torch {head['torch']}, {head['cpus']} CPUs, "
             f"global batch {GLOBAL_BATCH}, median of {args.rounds} rounds x {args.steps} steps)", "",
             "| config | params | processes x threads | step (ms) | series/s | all-reduce overhead (ms/step) "
             "| bare all-reduce (ms) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['params'] / 1e6:.2f}M | {r['processes']} x {r['threads']} "
                     f"| {1e3 * r['step_s']:.1f} | {r['series_per_s']:.0f} | {1e3 * r['all_reduce_overhead_s']:.1f} "
                     f"| {1e3 * r['bare_all_reduce_s']:.1f} |")
    (out_dir / f"ddp_{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["small", "paper"], choices=["small", "paper"])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per round (its median is the round's)")
    ap.add_argument("--tag", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results")))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--part", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.configs[0], args.rounds, args.steps, Path(args.part))
    else:
        driver(args)


if __name__ == "__main__":
    main()
