"""``python -m pyfdc.ops --selftest``: which backend runs, and a quick compiled-vs-twin check.

Exit status 0 when every compiled op matches its twin on every device it runs on (or when only
the reference ops exist, which the output says), 1 on a mismatch.
"""
from __future__ import annotations

import argparse
import sys

import torch

from . import _backend, backend, error_feedback, kv_scatter, reference, select_budget, select_tokens


def _check_device(device: str) -> list[str]:
    g = torch.Generator().manual_seed(0)
    L, B, H, T, dh, C, d = 2, 4, 3, 17, 4, 2, 12

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device)

    failures = []
    z, z_ref = rnd(B, T, C), rnd(B, T, C)
    probe = (torch.rand(B, T, generator=g) < 0.1).to(device)
    force = torch.tensor([False, True, False, False], device=device)
    idx, count = select_tokens(z, z_ref, probe, force, 1, 0.5, 1e-3)
    r_idx, r_count = reference.select_tokens(z, z_ref, probe, force, 1, 0.5, 1e-3)
    if not (torch.equal(idx, r_idx) and torch.equal(count, r_count)):
        failures.append("select_tokens")
    probes = torch.stack([torch.randperm(T - 2, generator=g)[:3] + 2 for _ in range(B)]).to(device)
    outs = []
    for fn in (select_budget, reference.select_budget):
        b_idx = torch.empty(B, 8, dtype=torch.int64, device=device)
        over = torch.zeros(B, dtype=torch.int64, device=device)
        outs.append((fn(z, z_ref, probes, 1, 0.5, 1e-3, idx_out=b_idx, overflow_out=over), over))
    if not all(torch.equal(a, b) for a, b in zip(*outs)):
        failures.append("select_budget")
    k, v, kn, vn = rnd(L, B, H, T, dh), rnd(L, B, H, T, dh), rnd(B, H, T, dh), rnd(B, H, T, dh)
    rk, rv = k.clone(), v.clone()
    kv_scatter(k, v, 1, idx, kn, vn)
    reference.kv_scatter(rk, rv, 1, idx, kn, vn)
    if not (torch.equal(k, rk) and torch.equal(v, rv)):
        failures.append("kv_scatter")
    crf, fresh, alpha = rnd(B, T, d), rnd(B, T, d), torch.full((B,), 0.1, device=device)
    rcrf = crf.clone()
    err = error_feedback(crf, fresh, idx, alpha)
    r_err = reference.error_feedback(rcrf, fresh, idx, alpha)
    if not (torch.allclose(crf, rcrf) and torch.allclose(err, r_err)):
        failures.append("error_feedback")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfdc.ops", description=__doc__.splitlines()[0])
    parser.add_argument("--selftest", action="store_true", help="compare the compiled ops with their twins")
    args = parser.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__} (cuda {torch.version.cuda}); "
          + ", ".join(f"{dev}: {backend(dev)}" for dev in devices)
          + (f" [{_backend.REASON}]" if _backend.REASON else ""))
    if not args.selftest:
        return 0
    status = 0
    for dev in devices:
        if backend(dev) == "reference":
            print(f"{dev}: reference ops only, nothing compiled to compare")
            continue
        failures = _check_device(dev)
        print(f"{dev}: {backend(dev)} vs reference: " + ("OK" if not failures else "MISMATCH in " + ", ".join(failures)))
        status |= bool(failures)
    return status


if __name__ == "__main__":
    sys.exit(main())
