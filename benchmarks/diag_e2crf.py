"""Where the E2-CRF budget step's error comes from (issue 9), on the model's own samples (no data).

Every experiment draws ``--num-samples`` series uncached (EM, ``--steps``) and with a cache variant
from the same noise, and reports what the variant changed: the final paired deviation (median and
per band, :func:`pyfdc.quality.paired_deviation`) and the per-band power error of the set
(:func:`pyfdc.quality.band_spectral_error`). ``rel. time`` is the variant's wall time over the
uncached run's in the same process (context only on a shared machine).

    python benchmarks/diag_e2crf.py sweep   [--steps 250] "budget=0.5" "budget=0.5,tau_warn=0.05,tau_safe=0.05" ...
    python benchmarks/diag_e2crf.py windows [--steps 250] --budget 0.35 0:2 0.67:2 0.33:0.67 0:0.33
    python benchmarks/diag_e2crf.py rules   [--steps 250] --budget 0.35 delta snr_peak low_snr
    python benchmarks/diag_e2crf.py kv      [--steps 250] --budget 0.5
    python benchmarks/diag_e2crf.py depth   [--steps 250] 0:0.5 1:0.34 2:0.2

* ``sweep``: ``E2CRFConfig.budgeted(**spec)`` per spec (keyword arguments, Python literals).
* ``windows``: the budget step only while ``lo <= t < hi``; every other step recomputes every token.
* ``rules``: which tokens fill the budget: ``delta`` (the shipped plain-δ ranking), ``snr_peak``
  (δ² weighted by SNR/(1+SNR)², SNR_κ(t) = α²λ_κ/σ² with λ_κ the token power of the uncached set:
  the tokens "being decided" at t first), ``low_snr`` (δ² / (1 + SNR): noisiest tokens first).
* ``depth``: ``SPLIT:BUDGET`` — every token recomputed through the first ``SPLIT`` layers, only the
  budget through the others (``0:F`` is the shipped step); equal token-layer cost at
  ``SPLIT/L + (1 − SPLIT/L)·F``.
* ``kv``: one-step ε̂ error against the full network along the *uncached* trajectory (no error
  compounding) for four ways of serving cached tokens' keys/values: ``stale`` (the shipped
  step), ``l0fresh`` (layer-0 K/V from the fresh embedding), ``perlayer`` (every layer's K/V from
  the fresh embedding plus the token's cached per-layer residual), ``perlayer_l0``.
"""
from __future__ import annotations

import argparse
import ast
import math
import time
from typing import Any

import torch

from pyfdc import e2crf, e2crf_budget_policy
from pyfdc.cached_layers import run_layers
from pyfdc.checkpoint import load_checkpoint
from pyfdc.e2crf import E2CRFConfig, E2CRFSampler
from pyfdc.e2crf_budget import BudgetForward
from pyfdc.pretrained import pretrained_path
from pyfdc.quality import band_spectral_error, paired_deviation
from pyfdc.sampling import NoiseStream, Sampler, _grid


def _spec(text: str) -> dict[str, Any]:
    """``"budget=0.5,tau_warn=0.1"`` -> ``{"budget": 0.5, "tau_warn": 0.1}`` (literals only)."""
    out: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def _report(label: str, x: torch.Tensor, ref: torch.Tensor, rel_time: float, f: float) -> None:
    pd, be = paired_deviation(x, ref), band_spectral_error(x, ref)
    bands = " / ".join(f"{v:.3f}" for v in pd["bands"].values())
    power = " / ".join(f"{100 * v:+.1f}%" for v in be.values())
    print(f"| {label} | {f:.2f} | {rel_time:.2f} | {pd['median']:.4f} | {bands} | {power} |", flush=True)


def _header(first: str) -> None:
    print(f"| {first} | f | rel. time | paired dev. (median) | per band | band power error |")
    print("|---|---|---|---|---|---|")


def _uncached(model: Any, args: argparse.Namespace) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    x = Sampler(model, "em").sample(args.num_samples, steps=args.steps, batch_size=args.num_samples,
                                    seed=args.seed, progress=False)
    return x, time.perf_counter() - t0


def _cached(model: Any, cfg: E2CRFConfig, args: argparse.Namespace) -> tuple[torch.Tensor, Any]:
    return E2CRFSampler(model, cfg).sample(args.num_samples, steps=args.steps, batch_size=args.num_samples,
                                           seed=args.seed, progress=False)


def sweep(model: Any, args: argparse.Namespace) -> None:
    ref, t_ref = _uncached(model, args)
    _header("budgeted(...)")
    for text in args.items:
        kw = _spec(text)
        cfg = E2CRFConfig.budgeted(kw.pop("budget", 0.5), **kw)
        x, st = _cached(model, cfg, args)
        _report(text, x, ref, st.wall_time_s / t_ref, st.mean_recomputed_fraction)


class _WindowedEpsFn(e2crf_budget_policy.BudgetEpsFn):
    """The budget policy inside ``WINDOW = (lo, hi)`` of t; a full refresh at every step outside it."""

    WINDOW = (0.0, math.inf)
    full_steps = 0

    def __call__(self, z: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        lo, hi = self.WINDOW
        if i == 0 or lo <= float(t[0]) < hi:
            return super().__call__(z, t, i)
        eps = self.fwd.refresh(z, t)
        pin = getattr(self.net, "pin_projector", None)
        eps = eps if pin is None else pin(eps, z, t)
        self.intensity.update(self.fwd.feat, None)
        self.last_full, self.steps_seen = i, self.steps_seen + 1
        _WindowedEpsFn.full_steps += 1
        return eps


def windows(model: Any, args: argparse.Namespace) -> None:
    ref, t_ref = _uncached(model, args)
    cfg = E2CRFConfig.budgeted(args.budget)
    e2crf.BudgetEpsFn = _WindowedEpsFn
    _header(f"budget {args.budget} only for t in")
    for text in args.items:
        lo, hi = (float(v) for v in text.split(":"))
        _WindowedEpsFn.WINDOW, _WindowedEpsFn.full_steps = (lo, hi), 0
        x, st = _cached(model, cfg, args)
        # the stats count the window's cached steps; the refreshed ones outside recompute everything
        n_full = _WindowedEpsFn.full_steps
        f = (st.mean_recomputed_fraction * (args.steps - n_full) + n_full) / args.steps
        _report(f"[{lo}, {hi})", x, ref, st.wall_time_s / t_ref, f)


class _RankedForward(BudgetForward):
    """The budget step with the drift tokens ranked by ``RULE`` (see the module docstring)."""

    RULE, POWER, SDE = "delta", None, None

    def _sparse(self, z, t, probes, alpha):  # type: ignore[override]
        self._t = t
        return super()._sparse(z, t, probes, alpha)

    def _select(self, z: torch.Tensor, probes: torch.Tensor) -> torch.Tensor:
        if self.RULE == "delta":
            return super()._select(z, probes)
        a, s = self.SDE.marginal(self._t)
        snr = a[:, None] ** 2 * self.POWER[None] / s[:, None] ** 2                  # (B, N')
        weight = snr / (1 + snr) ** 2 if self.RULE == "snr_peak" else 1 / (1 + snr)
        score = (z - self.cache.z_ref).pow(2).sum(-1) * weight
        score[:, :self.K + 1] = -1.0
        score.scatter_(1, probes, -1.0)
        top = score.topk(self.k - self.K - 1 - self.P, dim=1).indices
        band = torch.arange(self.K + 1, device=z.device).expand(z.shape[0], self.K + 1)
        self.idx.copy_(torch.cat([band, probes, top], dim=1))
        return self.idx


def rules(model: Any, args: argparse.Namespace) -> None:
    z_ref = Sampler(model, "em").sample_tokens(args.num_samples, steps=args.steps, batch_size=args.num_samples,
                                               seed=args.seed, progress=False)
    ref, t_ref = _uncached(model, args)
    _RankedForward.POWER, _RankedForward.SDE = z_ref.pow(2).mean(dim=(0, 2)), model.sde
    e2crf_budget_policy.BudgetForward = _RankedForward
    e2crf_budget_policy._FORWARDS.clear()
    _header(f"budget {args.budget}, ranking")
    for rule in args.items:
        _RankedForward.RULE = rule
        e2crf_budget_policy._FORWARDS.clear()
        x, st = _cached(model, E2CRFConfig.budgeted(args.budget), args)
        _report(rule, x, ref, st.wall_time_s / t_ref, st.mean_recomputed_fraction)


def _layers(blocks: Any, lo: int, hi: int, h: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor,
            idx: torch.Tensor | None) -> torch.Tensor:
    """Blocks ``lo..hi-1`` on rows ``h`` (``idx None``: all tokens, the layers' caches overwritten)."""
    return run_layers(blocks[lo:hi], h, kc, vc, idx, first=lo)


class _DepthForward(BudgetForward):
    """Every token fresh through the first ``SPLIT`` layers, only the budget through the rest; a cached
    token reads its fresh layer-``SPLIT`` state plus its stale residual of the later layers. (Warn
    refreshes become full refreshes; probes are off in the runs below.)"""

    SPLIT = 1

    def _refresh(self, z, t):  # type: ignore[override]
        c = self.cache
        hm = _layers(self.blocks, 0, self.SPLIT, self.net.embed(z, t), c.k, c.v, None)
        h = _layers(self.blocks, self.SPLIT, self.L, hm, c.k, c.v, None)
        torch.sub(h, hm, out=c.crf)
        c.z_ref.copy_(z)
        self.feat.copy_(h)
        return self.net.head(h)

    def _sparse(self, z, t, probes, alpha):  # type: ignore[override]
        c, B = self.cache, self.B
        idx = self._select(z, probes)
        rows = idx[..., None].expand(B, self.k, self.d)
        hm = _layers(self.blocks, 0, self.SPLIT, self.net.embed(z, t), c.k, c.v, None)
        hsm = hm.gather(1, rows)
        hs = _layers(self.blocks, self.SPLIT, self.L, hsm, c.k, c.v, idx)
        c.crf.scatter_(1, rows, hs - hsm)
        zr = idx[..., None].expand(B, self.k, self.C)
        c.z_ref.scatter_(1, zr, z.gather(1, zr))
        torch.add(hm, c.crf, out=self.feat).scatter_(1, rows, hs)
        return self.net.head(self.feat), torch.zeros_like(self.err)

    def _masked(self, z, t, probes, alpha, force):  # type: ignore[override]
        return self._refresh(z, t), torch.zeros_like(self.err)


def depth(model: Any, args: argparse.Namespace) -> None:
    ref, t_ref = _uncached(model, args)
    L = model.net.config.n_layers
    _header("first layers dense : budget after")
    for text in args.items:
        split, budget = int(text.split(":")[0]), float(text.split(":")[1])
        e2crf_budget_policy._FORWARDS.clear()
        e2crf_budget_policy.BudgetForward = _DepthForward if split else BudgetForward
        _DepthForward.SPLIT = split
        x, st = _cached(model, E2CRFConfig.budgeted(budget, num_probes=0), args)
        cost = split / L + (1 - split / L) * st.mean_recomputed_fraction
        _report(f"{split} : {budget} (token-layer cost {cost:.2f})", x, ref, st.wall_time_s / t_ref,
                st.mean_recomputed_fraction)
    e2crf_budget_policy.BudgetForward = BudgetForward


KV_VARIANTS = ("stale", "l0fresh", "perlayer", "perlayer_l0")


def _fresh_kv(variant: str, layer: int) -> bool:
    return variant == "perlayer" or (variant in ("l0fresh", "perlayer_l0") and layer == 0)


def _forward(net: Any, z: torch.Tensor, t: torch.Tensor, st: dict[str, list], variant: str,
             sel: torch.Tensor | None) -> torch.Tensor:
    """Full forward (``sel`` None: every token, cache overwritten) or a cached step serving the
    unselected tokens' K/V per ``variant``; ``st`` holds per-layer K, V and residuals ``C_l``."""
    h0 = net.embed(z, t)
    h = h0
    s3 = None if sel is None else sel[..., None]
    s4 = None if sel is None else sel[:, None, :, None]
    for layer, blk in enumerate(net.blocks):
        fresh = sel is None or _fresh_kv(variant, layer)
        if sel is not None and variant.startswith("perlayer") and fresh:
            h = torch.where(s3, h, h0 + st["C"][layer])          # cached rows: fresh h0 + their residual
        q, k, v = blk.qkv_heads(h)
        if not fresh:
            k, v = torch.where(s4, k, st["K"][layer]), torch.where(s4, v, st["V"][layer])
        keep = (lambda new, old: new) if sel is None else (lambda new, old, m=s4: torch.where(m, new, old))
        st["K"][layer], st["V"][layer] = keep(k, st["K"][layer]), keep(v, st["V"][layer])
        st["C"][layer] = h - h0 if sel is None else torch.where(s3, h - h0, st["C"][layer])
        h = h + blk.attn_residual(q, k, v)
        h = h + blk.ffn_residual(h)
    last = len(net.blocks)
    st["C"][last] = h - h0 if sel is None else torch.where(s3, h - h0, st["C"][last])
    feat = h if sel is None else torch.where(s3, h, h0 + st["C"][last])
    out = net.head(feat)
    return out if net.pin_projector is None else net.pin_projector(out, z, t)


def kv(model: Any, args: argparse.Namespace) -> None:
    net, sde = model.net.eval(), model.sde
    T, C, L = model.num_tokens, model.token_dim, len(net.blocks)
    mask = model.transform.mask(dtype=torch.float32)
    k = math.ceil(args.budget * T)
    K = E2CRFConfig().band(T, model.transform.kind)
    new = lambda: {"K": [None] * L, "V": [None] * L, "C": [None] * (L + 1), "z_ref": None}  # noqa: E731
    states = {v: new() for v in KV_VARIANTS}
    err = {v: [0.0, 0.0] for v in KV_VARIANTS}                     # weighted sq. error: all rows, cached rows
    n = args.num_samples
    stream = NoiseStream(args.seed, torch.arange(n), (T, C), mask)
    z, ts = stream(), _grid(sde, args.steps)
    with torch.no_grad():
        for i in range(args.steps):
            t, dt = ts[i], ts[i] - ts[i + 1]
            tt = torch.full((n,), t)
            beta, sigma = sde.beta_float(t), sde.marginal_float(t)[1]
            true = _forward(net, z, tt, new(), "stale", None)
            for v, st in states.items():
                if i % 50 == 0:
                    _forward(net, z, tt, st, v, None)
                    st["z_ref"] = z.clone()
                    continue
                drift = (z - st["z_ref"]).pow(2).sum(-1)
                drift[:, :K + 1] = math.inf
                sel = torch.zeros(n, T, dtype=torch.bool).scatter_(1, drift.topk(k, dim=1).indices, True)
                e = (true - _forward(net, z, tt, st, v, sel)) * mask * (beta * dt / sigma)   # error in the EM update
                st["z_ref"] = torch.where(sel[..., None], z, st["z_ref"])
                err[v][0] += e.pow(2).sum().item()
                err[v][1] += (e * ~sel[..., None]).pow(2).sum().item()
            z = z.mul(1 + 0.5 * beta * dt).addcmul_(true, mask, value=-beta * dt / sigma)
            if i < args.steps - 1:
                z.add_(stream(), alpha=math.sqrt(beta * dt))
    print(f"| K/V of cached tokens (budget {args.budget}) | summed sq. error of the EM update | share on cached rows |")
    print("|---|---|---|")
    for v, (tot, cached) in err.items():
        print(f"| {v} | {tot:.4e} | {cached / max(tot, 1e-30):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", choices=("sweep", "windows", "rules", "kv", "depth"))
    ap.add_argument("items", nargs="*", help="specs (sweep), lo:hi windows (windows), rule names (rules)")
    ap.add_argument("--checkpoint", default=None, help="a run folder or a shipped name (default: the default model)")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--num-samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_intermixed_args()
    torch.set_num_threads(1)
    from pyfdc.cli_args import checkpoint_dir

    model = load_checkpoint(checkpoint_dir(args.checkpoint) if args.checkpoint else pretrained_path())
    print(f"`diag_e2crf.py {args.experiment}`: {args.num_samples} series, EM-{args.steps}, seed {args.seed}\n")
    {"sweep": sweep, "windows": windows, "rules": rules, "kv": kv, "depth": depth}[args.experiment](model, args)


if __name__ == "__main__":
    main()
