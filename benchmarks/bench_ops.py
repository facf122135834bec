"""Compiled vs reference time per E2-CRF op, side by side in one process (not a test).

Paper-sized step (ECG): B=64 samples, N'=94 half-spectrum tokens of width 2M=2, d=72, L=10
layers, H=12 heads (dh=6). Recompute rows per sample: ~35% of N' (the paper's average
recompute fraction); error-feedback probes: 8 per sample. Inputs are allocated outside the timed
statements and both sides write into preallocated outputs, as the cached sampler does.

    python benchmarks/bench_ops.py [--threads N] [--min-time S] [--device cpu|cuda|all]
"""
from __future__ import annotations

import argparse

import torch
import torch.utils.benchmark as tb

import pyfdc.ops as ops

B, T, C, D, L, H = 64, 94, 2, 72, 10, 12
DH = D // H
RECOMPUTE, PROBES = 33, 8


def rows(count: int, width: int, g: torch.Generator) -> torch.Tensor:
    """(B, width) ascending distinct tokens, 3/4..1 x count valid per sample, -1 padded."""
    out = torch.full((B, width), -1, dtype=torch.int64)
    for b in range(B):
        n = int(torch.randint(3 * count // 4, count + 1, (1,), generator=g))
        out[b, :n] = torch.randperm(T, generator=g)[:n].sort().values
    return out


def inputs(device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(B, T, C, generator=g)
    z_ref = z + 0.02 * torch.randn(B, T, C, generator=g)  # ~35% selected, as in the paper
    env = {
        "z": z, "z_ref": z_ref,
        "probe": torch.rand(B, T, generator=g) < 4 / T,
        "force": torch.zeros(B, dtype=torch.bool),
        "idx_out": torch.empty(B, T, dtype=torch.int64), "count_out": torch.empty(B, dtype=torch.int64),
        "k_cache": torch.randn(L, B, H, T, DH, generator=g), "v_cache": torch.randn(L, B, H, T, DH, generator=g),
        "rec_idx": rows(RECOMPUTE, RECOMPUTE, g),
        "k_new": torch.randn(B, H, RECOMPUTE, DH, generator=g), "v_new": torch.randn(B, H, RECOMPUTE, DH, generator=g),
        "crf": torch.randn(B, T, D, generator=g), "probe_idx": rows(PROBES, PROBES, g),
        "fresh": torch.randn(B, PROBES, D, generator=g), "alpha": torch.full((B,), 0.05),
        "err_out": torch.empty(B),
    }
    return {k: v.to(device) for k, v in env.items()}


STMTS = {
    "select_tokens": "impl.select_tokens(z, z_ref, probe, force, 1, 0.05, 1e-3, idx_out=idx_out, count_out=count_out)",
    "kv_scatter": "impl.kv_scatter(k_cache, v_cache, 3, rec_idx, k_new, v_new)",
    "error_feedback": "impl.error_feedback(crf, fresh, probe_idx, alpha, err_out=err_out)",
}


def check_parity(env: dict) -> None:
    a = ops.select_tokens(env["z"], env["z_ref"], env["probe"], env["force"], 1, 0.05, 1e-3)
    b = ops.reference.select_tokens(env["z"], env["z_ref"], env["probe"], env["force"], 1, 0.05, 1e-3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), "select_tokens parity"
    kc, vc, rk, rv = (env[n].clone() for n in ("k_cache", "v_cache", "k_cache", "v_cache"))
    ops.kv_scatter(kc, vc, 3, env["rec_idx"], env["k_new"], env["v_new"])
    ops.reference.kv_scatter(rk, rv, 3, env["rec_idx"], env["k_new"], env["v_new"])
    assert torch.equal(kc, rk) and torch.equal(vc, rv), "kv_scatter parity"
    c1, c2 = env["crf"].clone(), env["crf"].clone()
    e1 = ops.error_feedback(c1, env["fresh"], env["probe_idx"], env["alpha"])
    e2 = ops.reference.error_feedback(c2, env["fresh"], env["probe_idx"], env["alpha"])
    torch.testing.assert_close(c1, c2)
    torch.testing.assert_close(e1, e2)
    frac = float(a[1].double().mean()) / T
    print(f"  parity OK; selection recomputes {frac:.0%} of tokens on these inputs")


def run(device: str, threads: int, min_time: float) -> list[tuple[str, float, float]]:
    env = inputs(device)
    print(f"\n== {device}: backend {ops.backend(device)!r}, {threads} thread(s)"
          + (f", {torch.cuda.get_device_name()}" if device == "cuda" else ""))
    check_parity(env)
    results, out = [], []
    for op, stmt in STMTS.items():
        medians = {}
        for label, impl in (("compiled", ops), ("reference", ops.reference)):
            m = tb.Timer(stmt, globals={**env, "impl": impl}, num_threads=threads, label=f"pyfdc ops ({device})",
                         sub_label=op, description=label).blocked_autorange(min_run_time=min_time)
            results.append(m)
            medians[label] = m.median
        out.append((op, medians["compiled"], medians["reference"]))
    tb.Compare(results).print()
    print(f"{'op':<16}{'compiled':>14}{'reference':>14}{'ratio':>9}")
    for op, comp, ref in out:
        print(f"{op:<16}{comp * 1e6:>11.1f} us{ref * 1e6:>11.1f} us{ref / comp:>8.1f}x")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both sides (default 1)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    p.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    args = p.parse_args()
    print(f"torch {torch.__version__}; B={B} N'={T} 2M={C} d={D} L={L} H={H} dh={DH}; "
          f"recompute rows {RECOMPUTE}, probes {PROBES} per sample")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for dev in devices:
        if dev == "cuda" and not torch.cuda.is_available():
            print("\n== cuda: no CUDA device, skipped")
            continue
        if ops.backend(dev) == "reference":
            print(f"\n== {dev}: no compiled ops for this device (backend 'reference'), skipped")
            continue
        run(dev, args.threads, args.min_time)


if __name__ == "__main__":
    main()
