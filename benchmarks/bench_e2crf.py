"""E2-CRF speed/quality benchmark (a script, not a test).

    python benchmarks/bench_e2crf.py --checkpoint DIR [--steps 1000 --repeats 3 --batch-sizes 64 1]
    python benchmarks/bench_e2crf.py --quick          # untrained tiny model, 40 steps: smoke run

Everything runs in one process: per batch size, a warm-up run of every mode, then ``--repeats``
rounds in which every mode samples with the same seed (round r uses seed r, so all modes see the
same noise). Wall times are medians over rounds; SW (time and frequency domain, ± 2 s.e. over the
projections) is computed on the union of the rounds' samples against the held-out split. Because the
sampler is batch invariant, samples (hence SW) do not depend on the batch size: SW is computed at
the first batch size only. "paired RMS dev." is the RMS difference (original units) between a
run's samples and the uncached samples drawn with the same noise — a low-variance quality signal
that SW on a few hundred samples cannot give. Extra rows: uncached EM and DDIM with the step count that matches the
``full`` run's wall time, and the uncached network on the N-token (time-domain-length) layout.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyfdc import ops  # noqa: E402
from pyfdc.e2crf import MODES, E2CRFConfig, E2CRFSampler  # noqa: E402


@dataclass
class Row:
    name: str
    steps: int
    times: list[float] = field(default_factory=list)
    f: float = 1.0
    samples: list[torch.Tensor] = field(default_factory=list)
    cache_bytes: int = 0
    rss_growth: int = 0
    sw: dict[str, tuple[float, float]] = field(default_factory=dict)
    paired_rms: float = math.nan  # RMS of (x − x_uncached), same noise; only for the same step count

    @property
    def time(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from pyfdc.data import load_dataset

    if args.quick:
        from pyfdc.model import DiffusionModel
        from pyfdc.score_net import ModelConfig, ScoreTransformer
        from pyfdc.sde import VPSDE
        from pyfdc.spectral import make_transform

        ds = load_dataset("ecg")
        _, n, m = ds.train.shape
        tr = make_transform("freq", n, m)
        torch.manual_seed(0)
        cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=32, n_layers=2, n_heads=4, d_ff=128, rff_dim=16)
        net = ScoreTransformer(cfg, tr.mask())
        with torch.no_grad():
            net.out_proj.weight.mul_(0.1)  # keep the untrained trajectory O(1)
        return DiffusionModel(net.eval(), tr, VPSDE()), ds
    from pyfdc.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    meta = getattr(model, "meta", {}) or {}
    name = meta.get("dataset") or meta.get("dataset_name") or "ecg"
    return model, load_dataset(name if isinstance(name, str) else "ecg")


def _uncached(model: Any, steps: int, n: int, batch: int, seed: int, method: str) -> tuple[torch.Tensor, float]:
    from pyfdc.sampling import Sampler

    t0 = time.perf_counter()
    x = Sampler(model, method=method).sample(n, steps=steps, batch_size=batch, seed=seed, progress=False)
    return x, time.perf_counter() - t0


def _cached(model: Any, cfg: E2CRFConfig, steps: int, n: int, batch: int, seed: int):
    t0 = time.perf_counter()
    x, stats = E2CRFSampler(model, cfg).sample(n, steps=steps, batch_size=batch, seed=seed, progress=False)
    return x, time.perf_counter() - t0, stats


def _n_token_forward_time(model: Any, batch: int, reps: int = 5) -> tuple[float, float]:
    """Median uncached forward time: our N'-token net vs the same config on N tokens of width M."""
    from pyfdc.score_net import ScoreTransformer

    net = model.net
    cfg = net.config
    n, m = model.transform.n, model.transform.m
    other = ScoreTransformer(type(cfg)(**{**cfg.to_dict(), "num_tokens": n, "token_dim": m})).eval()
    out = []
    for nn_, T, C in ((net, cfg.num_tokens, cfg.token_dim), (other, n, m)):
        z, t = torch.randn(batch, T, C), torch.full((batch,), 0.5)
        with torch.no_grad():
            nn_(z, t)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                nn_(z, t)
                ts.append(time.perf_counter() - t0)
        out.append(statistics.median(ts))
    return out[0], out[1]


def _sw(rows: list[Row], test: torch.Tensor, n_proj: int) -> None:
    from pyfdc.metrics import sliced_wasserstein_stats

    for row in rows:
        if not row.samples:
            continue
        x = torch.cat(row.samples).double()
        if not torch.isfinite(x).all():
            row.sw = {d: (math.nan, math.nan) for d in ("time", "freq")}
            continue
        row.sw = {d: sliced_wasserstein_stats(x, test, n_projections=n_proj, domain=d) for d in ("time", "freq")}


def _fmt_sw(row: Row, base: Row, dom: str) -> str:
    if dom not in row.sw:
        return "—"
    m, e = row.sw[dom]
    rel = (m / base.sw[dom][0] - 1) * 100 if dom in base.sw and base.sw[dom][0] > 0 else math.nan
    return f"{m:.4f} ± {e:.4f} ({rel:+.1f}%)" if row is not base else f"{m:.4f} ± {e:.4f}"


def _table(rows: list[Row], base: Row, batch: int, n: int) -> str:
    lines = [f"\n### batch {batch} ({n} samples per round, median wall time over rounds)\n",
             "| run | steps | wall s | speedup | mean f | ideal 1/f | achieved | SW time (Δ vs uncached) "
             "| SW freq (Δ vs uncached) | paired RMS dev. | cache MiB | peak RSS growth after step 10, MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = base.time / r.time if r.time > 0 else math.nan
        ideal = 1.0 / r.f if r.f > 0 else math.inf
        cached = r is not base and not r.name.startswith("uncached")
        ideal_s, ach_s = (f"{ideal:.2f}×", f"{sp / ideal * 100:.0f}%") if cached else ("—", "—")
        lines.append(f"| {r.name} | {r.steps} | {r.time:.3f} | {sp:.2f}× | {r.f:.3f} | {ideal_s} | "
                     f"{ach_s} | {_fmt_sw(r, base, 'time')} | {_fmt_sw(r, base, 'freq')} | "
                     f"{'—' if math.isnan(r.paired_rms) else f'{r.paired_rms:.4f}'} | "
                     f"{r.cache_bytes / 2**20:.2f} | {r.rss_growth / 2**20:.2f} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    model, ds = _load(args)
    test = torch.as_tensor(ds.test, dtype=torch.float64)
    overrides = {k: getattr(args, k) for k in ("K", "R", "tau0", "num_probes") if getattr(args, k) is not None}
    modes = [m for m in args.modes if m != "uncached"]
    out = [f"## E2-CRF benchmark ({'--quick, untrained tiny model' if args.quick else args.checkpoint})\n",
           f"- torch {torch.__version__}, {args.threads} thread(s), ops backend `{ops.backend('cpu')}`, "
           f"T = {model.transform.num_tokens} tokens, {args.steps} EM steps, {args.repeats} rounds, "
           f"config overrides {overrides or 'none (paper defaults)'}",
           f"- held-out split: {len(test)} series; SW over {args.projections} projections, ± 2 s.e."]
    results: dict[str, Any] = {"batches": {}}
    for bi, batch in enumerate(args.batch_sizes):
        n = args.samples if batch > 1 else args.samples_b1
        rows = {"uncached": Row("uncached", args.steps)}
        for m in modes:
            rows[m] = Row(m, args.steps)
        cfgs = {m: E2CRFConfig(mode=m, **overrides) for m in modes}
        # warm-up: every path once, short
        _uncached(model, min(3, args.steps), min(n, batch), batch, 0, "em")
        for m in modes:
            _cached(model, cfgs[m], min(3, args.steps), min(n, batch), batch, 0)
        for r in range(args.repeats):
            x, t, st = _cached(model, E2CRFConfig(mode="uncached"), args.steps, n, batch, r)
            rows["uncached"].times.append(t)
            rows["uncached"].samples.append(x)
            rows["uncached"].rss_growth = max(rows["uncached"].rss_growth, st.peak_rss_growth_bytes)
            for m in modes:
                x, t, st = _cached(model, cfgs[m], args.steps, n, batch, r)
                row = rows[m]
                row.times.append(t)
                row.samples.append(x)
                row.f = st.mean_recomputed_fraction
                row.cache_bytes, row.rss_growth = st.cache_bytes, max(row.rss_growth, st.peak_rss_growth_bytes)
        base = rows["uncached"]
        extra: list[Row] = []
        if "full" in rows:
            k = max(1, round(args.steps * rows["full"].time / base.time))
            for method in ("em", "ddim"):
                row = Row(f"uncached {method.upper()}, equal wall time as full", k)
                for r in range(args.repeats):
                    x, t = _uncached(model, k, n, batch, r, method)
                    row.times.append(t)
                    row.samples.append(x)
                row.f = 1.0
                extra.append(row)
        all_rows = list(rows.values()) + extra
        ref = torch.cat(base.samples).double()
        for row in all_rows:
            if row.steps == base.steps and row.samples:
                row.paired_rms = float((torch.cat(row.samples).double() - ref).pow(2).mean().sqrt())
        if bi == 0:
            _sw(all_rows, test, args.projections)
        for row in all_rows:
            row.samples.clear()
        out.append(_table(all_rows, base, batch, n))
        tn, tN = _n_token_forward_time(model, batch)
        out.append(f"\nuncached network forward at batch {batch}: N' = {model.transform.num_tokens} tokens "
                   f"{tn * 1e3:.2f} ms vs N = {model.transform.n} tokens {tN * 1e3:.2f} ms "
                   f"({tN / tn:.2f}× faster on the half-spectrum layout)")
        results["batches"][str(batch)] = {
            r.name: {"steps": r.steps, "time_s": r.time, "times_s": r.times, "f": r.f, "sw": r.sw,
                     "paired_rms": r.paired_rms,
                     "cache_bytes": r.cache_bytes, "peak_rss_growth_bytes": r.rss_growth} for r in all_rows}
        results["batches"][str(batch)]["forward_ms"] = {"half_spectrum": tn * 1e3, "n_tokens": tN * 1e3}
    text = "\n".join(out) + "\n"
    if args.out:
        from pyfdc._io import atomic_write_bytes

        atomic_write_bytes(Path(args.out), text.encode())
    if args.json:
        from pyfdc._io import atomic_write_bytes

        atomic_write_bytes(Path(args.json), json.dumps(results, indent=1, default=float).encode())
    return text


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trained model folder")
    src.add_argument("--quick", action="store_true", help="untrained tiny model, few steps (smoke run)")
    p.add_argument("--steps", type=int, default=None, help="EM steps (default 1000, --quick 40)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3, --quick 2)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1])
    p.add_argument("--samples", type=int, default=None, help="samples per round at batch > 1 (default batch)")
    p.add_argument("--samples-b1", type=int, default=None, help="samples per round at batch 1 (default 4, quick 2)")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--projections", type=int, default=None, help="SW projections (default 10000, quick 500)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--K", type=int, default=None)
    p.add_argument("--R", type=int, default=None)
    p.add_argument("--tau0", type=float, default=None)
    p.add_argument("--num-probes", dest="num_probes", type=int, default=None)
    p.add_argument("--out", help="write the markdown here too")
    p.add_argument("--json", help="write raw numbers here")
    args = p.parse_args(argv)
    q = args.quick
    args.steps = args.steps or (40 if q else 1000)
    args.repeats = args.repeats or (2 if q else 3)
    args.samples_b1 = args.samples_b1 or (2 if q else 4)
    args.projections = args.projections or (500 if q else 10_000)
    if args.samples is None:
        args.samples = max(args.batch_sizes)
    print(run(args))


if __name__ == "__main__":
    main()
