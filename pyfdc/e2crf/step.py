"""The E2-CRF cached step (static shape): every sample recomputes exactly ``k`` tokens per step.

Each sample's recompute set is one fixed ``(B, k)`` row written by :func:`pyfdc.ops.select_budget`:
``[band 0..K | P probes | the k − K − 1 − P tokens with the highest drift score δ/τ]``. Because the
row is never padded, every row-wise op (LayerNorm, QKV, out-projection, FFN) runs on the dense
``(B, k, d)`` slab of real rows, K/V go from the QKV output straight into the cache with
:func:`pyfdc.ops.kv_scatter` (no staging copy, no trash row needed), and attention is ``k`` queries
against the ``N'`` cached keys. There is no ``.item()``, ``nonzero`` or data-dependent shape in a
step, so the step functions below compile with ``torch.compile(fullgraph=True)`` and never
recompile while ``B`` stays the same:

* :meth:`CachedStep.refresh` — every token of every sample (step 0, every ``R`` steps).
* :meth:`CachedStep.sparse` — the budget step.
* :meth:`CachedStep.masked` — the budget step computed densely with the writes masked, plus a
  full refresh of the samples in ``force``: the warn refresh (Alg. 1 l.16) of a few samples
  without touching the others, so batch invariance holds.
* :meth:`CachedStep.policy_sparse` — the budget step with the policy's per-step work around it (the
  probes from a draw, the Eq. 14 step size, the Eq. 12 event intensity, the warn flags) in the same
  call: what the sampler runs on most steps, one compiled graph instead of ~20 eager ops around one.

With ``head_every > 1`` the budget steps take ``head=False`` on the steps where the model's time-domain
head is not due: they add the head's correction ``head_delta (B, N', C)`` kept from its last run instead of
running it (each value of ``head`` is its own compiled graph).

Which of them runs is decided on the host from the step index and one lagged flag (see
:class:`pyfdc.e2crf.policy.E2CRFPolicy`), never from a value the step is still computing.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pyfdc import ops
from pyfdc.e2crf.intensity import eq14_step_size, fold_features
from pyfdc.e2crf.kv_cache import KVCache
from pyfdc.e2crf.layers import index_mask, run_layers
from pyfdc.core.token_moments import gaussian_eps


class CachedStep:
    """Persistent state + the three fixed-shape step functions for one batch size ``B``.

    State (allocated once; :meth:`reset` clears it for the next batch): a :class:`KVCache`
    (``k, v (L, B, H, N', dh)``, ``crf (B, N', d)``, ``z_ref (B, N', C)``), the selection row
    ``idx (B, k)``, the overflow counter ``overflow (B,)`` (tokens over their drift threshold that
    the budget left cached, summed over steps), the probe errors ``err (B,)`` and the final
    features ``feat (B, N', d)``.
    """

    def __init__(self, net: nn.Module, batch: int, num_tokens: int, token_dim: int, *, k: int, K: int,
                 num_probes: int, tau0: float, eps: float, energy_weighted: bool = True, eta: float = 1e-6,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 compile: bool = False, cached_output: str = "features",
                 sde: object | None = None, moments: tuple[Tensor, Tensor] | None = None,
                 step_rule: tuple[float, float, float] | None = None, head_every: int = 1) -> None:
        if cached_output not in CACHED_OUTPUTS:
            raise ValueError(f"CachedStep: cached_output must be one of {CACHED_OUTPUTS}, got {cached_output!r}")
        if cached_output == "gaussian" and sde is None:
            raise ValueError("CachedStep: cached_output='gaussian' needs the model's sde (for alpha(t), sigma(t))")
        if cached_output == "gaussian" and (moments is None or tuple(moments[0].shape) != (num_tokens, token_dim)
                                            or tuple(moments[1].shape) != (num_tokens, token_dim)):
            raise ValueError(f"CachedStep: cached_output='gaussian' needs the token moments (mean, var), each "
                             f"({num_tokens}, {token_dim})")
        if not (K + 1 + num_probes <= k <= num_tokens):
            raise ValueError(f"CachedStep: the budget k = {k} must hold the band 0..K and the probes "
                             f"(K + 1 + P = {K + 1 + num_probes}) and be at most N' = {num_tokens}")
        self.net, self.blocks = net, list(net.blocks)
        p = next(net.parameters())
        self.device = torch.device(device) if device is not None else p.device
        cfg = net.config
        self.B, self.T, self.C = batch, num_tokens, token_dim
        self.L, self.H, self.dh, self.d = cfg.n_layers, cfg.n_heads, cfg.head_dim, cfg.d_model
        self.k, self.K, self.P = k, K, num_probes
        self.tau0, self.eps, self.energy_weighted, self.eta = tau0, eps, energy_weighted, eta
        self.step_rule = step_rule   # (tau_safe, alpha_max, tau_warn) for policy_sparse
        self.cache = KVCache(self.L, batch, self.H, num_tokens, self.dh, token_dim, device=self.device, dtype=dtype)
        kw = {"device": self.device}
        self.idx = torch.zeros(batch, k, dtype=torch.int64, **kw)
        self.overflow = torch.zeros(batch, dtype=torch.int64, **kw)
        self.err = torch.zeros(batch, dtype=dtype, **kw)
        self.feat = torch.zeros(batch, num_tokens, self.d, dtype=dtype, **kw)
        self._rule = torch.zeros(batch, num_tokens + 1, dtype=torch.bool, **kw)
        self._sel = torch.zeros(batch, num_tokens + 1, dtype=torch.bool, **kw)
        self.arange_t = torch.arange(num_tokens, **kw)
        self.band = self.arange_t <= K
        # policy_sparse's statistics of this batch: cache hits per token (summed over samples and steps)
        self.hits = torch.zeros(num_tokens, dtype=torch.float64, **kw)
        self.no_probes = torch.zeros(batch, 0, dtype=torch.int64, **kw)
        # gaussian output: each token's ε̂ − E[ε | z, t] under the token moments (the non-Gaussian rest)
        # at its last recompute
        self.cached_output, self.sde = cached_output, sde
        self.rest = torch.zeros(batch, num_tokens, token_dim, dtype=dtype, **kw)
        self.moments = None if moments is None else tuple(m.to(device=self.device, dtype=dtype) for m in moments)
        # the time head's correction (its output minus its input eps) at its last run, when it may be reused
        self.reuse_head = head_every > 1 and getattr(net, "time_head", None) is not None
        self.head_delta = torch.zeros(batch, num_tokens, token_dim, dtype=dtype, **kw)
        steps = (self._refresh, self._sparse, self._masked, self._policy_sparse)
        if compile:
            import torch._dynamo.config as dynamo_config

            # every (batch, budget, network) is its own specialisation of the same three methods;
            # dynamo's default of 8 per code object would fail hard (fullgraph) on the 9th forward
            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
            steps = tuple(torch.compile(fn, fullgraph=True, dynamic=False) for fn in steps)
        self._steps = steps

    @property
    def cache_bytes(self) -> int:
        ts = (*self.cache.state_dict().values(), self.idx, self.overflow, self.feat, self._rule, self._sel)
        if self.cached_output != "features":
            ts += (self.rest,)
        if self.reuse_head:
            ts += (self.head_delta,)
        return int(sum(t.numel() * t.element_size() for t in ts))

    def reset(self) -> None:
        """Forget the previous batch (no reallocation, so compiled steps stay valid)."""
        self.cache.reset()
        for t in (self.idx, self.overflow, self.err, self.feat, self.rest, self.hits, self.head_delta):
            t.zero_()

    # ------------------------------------------------------------------ the three steps
    def refresh(self, z: Tensor, t: Tensor) -> Tensor:
        """Every token of every sample: ``z (B, N', C), t (B,)`` -> ``eps_hat (B, N', C)``, as the network's
        forward gives it (the time head and the pinned coordinates included, as in every step here)."""
        with torch.no_grad():
            return self._steps[0](z, t)

    def sparse(self, z: Tensor, t: Tensor, probes: Tensor, alpha: Tensor,
               head: bool = True) -> tuple[Tensor, Tensor]:
        """The budget step: ``probes (B, P)``, ``alpha (B,)`` -> ``eps_hat``, relative probe error ``(B,)``;
        ``head=False``: the time head's kept correction instead of its run (only with ``head_every > 1``)."""
        with torch.no_grad():
            return self._steps[1](z, t, probes, alpha, self._head_flag(head))

    def masked(self, z: Tensor, t: Tensor, probes: Tensor, alpha: Tensor, force: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`sparse`, computed densely, with the samples in ``force (B,)`` fully refreshed."""
        with torch.no_grad():
            return self._steps[2](z, t, probes, alpha, force)

    def policy_sparse(self, z: Tensor, t: Tensor, draw: Tensor | None, r: Tensor, prev: Tensor, prev_sq: Tensor,
                      warn: Tensor, head: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`sparse` with the policy's per-step work in the same call (needs ``step_rule``).

        ``draw (B, N', 1)`` the probe stream's draw (``None`` when P = 0; :meth:`probe_rows`); the event
        intensity's state ``r (B,)`` (this step's, already zeroed while it is not defined), ``prev (B, N', d)``
        and ``prev_sq (B,)`` is read for the Eq. 14 step size and updated in place (Eq. 12,
        :func:`~pyfdc.e2crf.intensity.fold_features`); ``warn (B,)`` receives ``r > tau_warn``. Returns
        what :meth:`sparse` returns and the step's statistics ``(3,)``: the sums over samples of the ``r``
        used, of the probe error and of the tokens recomputed; the tokens served from the cache are added to
        :attr:`hits`. ``head`` as in :meth:`sparse`.
        """
        if self.step_rule is None:
            raise ValueError("CachedStep.policy_sparse needs step_rule=(tau_safe, alpha_max, tau_warn)")
        with torch.no_grad():
            return self._steps[3](z, t, draw, r, prev, prev_sq, warn, self._head_flag(head))

    def _head_flag(self, head: bool) -> bool:
        if not head and not self.reuse_head:
            raise ValueError("CachedStep: head=False needs head_every > 1 and a model with a time head")
        return bool(head)

    def probe_rows(self, draw: Tensor | None) -> Tensor:
        """``(B, P)`` distinct tokens outside the band: the ``P`` smallest of ``draw (B, N', 1)`` there."""
        if not self.P:
            return self.no_probes
        score = draw.reshape(self.B, self.T).masked_fill(self.band, math.inf)
        return torch.topk(score, self.P, dim=1, largest=False, sorted=True).indices

    def _policy_sparse(self, z: Tensor, t: Tensor, draw: Tensor | None, r: Tensor, prev: Tensor, prev_sq: Tensor,
                       warn: Tensor, head: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        tau_safe, alpha_max, tau_warn = self.step_rule
        r_used = r.sum()
        eps, err = self._sparse(z, t, self.probe_rows(draw), eq14_step_size(r, tau_safe, alpha_max), head)
        fold_features(r, prev, prev_sq, self.feat, err if self.P else None, self.eta, have_prev=True)
        torch.gt(r, tau_warn, out=warn)
        fresh = self._sel[:, :self.T]   # the recomputed tokens, as _sparse marked them
        self.hits += (~fresh).sum(dim=0)
        return eps, err, torch.stack([r_used.double(), err.sum().double(), fresh.sum().double()])

    def _refresh(self, z: Tensor, t: Tensor) -> Tensor:
        """Every token recomputed: ``z (B, N', C), t (B,)`` -> ``eps_hat (B, N', C)``; ``feat`` updated."""
        c = self.cache
        tf = self.net.time_features(t)
        h0 = self.net.embed(z, t, tf)
        h = run_layers(self.blocks, h0, c.k, c.v, None)
        torch.sub(h, h0, out=c.crf)
        c.z_ref.copy_(z)
        self.feat.copy_(h)
        eps = self.net.head(h)
        if self.cached_output == "gaussian":
            torch.sub(eps, self._gaussian_eps(z, t), out=self.rest)
        return self._finish(eps, z, t, tf)

    def _finish(self, eps: Tensor, z: Tensor, t: Tensor, tf: Tensor, head: bool = True) -> Tensor:
        """``net.finish``: the time head (run and its correction kept, or its kept correction added when
        ``head`` is False), then the pinned coordinates."""
        net = self.net
        if not self.reuse_head:
            return net.finish(eps, z, t, tf)
        if head:
            out = net.time_head(eps, z, tf, net.mask)
            torch.sub(out, eps, out=self.head_delta)
        else:
            out = eps + self.head_delta
        return out if net.pin_projector is None else net.pin_projector(out, z, t)

    def _coef(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a, s = self.sde.marginal(t)
        return a[:, None, None].to(self.rest.dtype), s[:, None, None].to(self.rest.dtype)

    def _gaussian_eps(self, z: Tensor, t: Tensor) -> Tensor:
        a, s = self._coef(t)
        return gaussian_eps(z, a, s, *self.moments)

    def _gaussian_output(self, z: Tensor, t: Tensor, eps: Tensor, fresh: Tensor) -> Tensor:
        """Fresh rows ``fresh (B, N')`` keep the network's ε̂ and store its non-Gaussian rest
        ε̂ − E[ε | z, t]; cached rows answer E[ε | z_now, t_now] + their stored rest (gaussian mode)."""
        f = fresh[..., None]
        w = self._gaussian_eps(z, t)
        torch.where(f, eps - w, self.rest, out=self.rest)
        return torch.where(f, eps, (w + self.rest) * self.net.mask)

    def _output(self, z: Tensor, t: Tensor, eps: Tensor, fresh: Tensor) -> Tensor:
        return self._gaussian_output(z, t, eps, fresh) if self.cached_output == "gaussian" else eps

    def _select(self, z: Tensor, probes: Tensor) -> Tensor:
        return ops.select_budget(z, self.cache.z_ref, probes, self.K, self.tau0, self.eps, self.energy_weighted,
                                 idx_out=self.idx, overflow_out=self.overflow)

    def _feedback(self, c_probe: Tensor, probe_idx: Tensor, alpha: Tensor) -> Tensor:
        """Eq. 14 nudge of the probed rows; relative squared error ``(B,)``."""
        e = ops.error_feedback(self.cache.crf, c_probe, probe_idx, alpha, err_out=self.err)
        return e.pow(2) / (c_probe.pow(2).sum(dim=(1, 2)) + self.eta)

    def _sparse(self, z: Tensor, t: Tensor, probes: Tensor, alpha: Tensor,
                head: bool = True) -> tuple[Tensor, Tensor]:
        """The budget step. ``probes (B, P)`` distinct tokens > K, ``alpha (B,)`` Eq. 14 step sizes; ``head``:
        run the time head (else add its kept correction).

        Returns ``eps_hat (B, N', C)`` and the relative probe error ``(B,)`` (zeros when P = 0).
        """
        c, B, d, K, P = self.cache, self.B, self.d, self.K, self.P
        tf = self.net.time_features(t)
        h0 = self.net.embed(z, t, tf)                                 # (B, N', d)
        idx = self._select(z, probes)                                 # (B, k)
        rows = idx[..., None].expand(B, self.k, d)
        hs0 = h0.gather(1, rows)                                      # (B, k, d)
        hs = run_layers(self.blocks, hs0, c.k, c.v, idx)
        fresh = hs - hs0                                              # fresh cumulative residuals
        err = self._feedback(fresh[:, K + 1:K + 1 + P], idx[:, K + 1:K + 1 + P], alpha) if P else \
            torch.zeros_like(self.err)
        for lo, hi in ((0, K + 1), (K + 1 + P, self.k)):              # rule rows: band, then drift
            if hi > lo:
                ri = idx[:, lo:hi]
                c.crf.scatter_(1, rows[:, lo:hi], fresh[:, lo:hi])
                zr = ri[..., None].expand(B, hi - lo, self.C)
                c.z_ref.scatter_(1, zr, z.gather(1, zr))
        feat = torch.add(h0, c.crf, out=self.feat)  # cached tokens: h0 + C
        feat.scatter_(1, rows, hs)                                    # recomputed ones: fresh
        eps = self.net.head(feat)
        fresh = index_mask(idx, self.T, self._sel)   # (B, N'), kept in _sel: policy_sparse counts hits from it
        if self.cached_output != "features":
            eps = self._output(z, t, eps, fresh)
        return self._finish(eps, z, t, tf, head), err

    def _masked(self, z: Tensor, t: Tensor, probes: Tensor, alpha: Tensor, force: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`sparse` row for row, computed densely, except that samples with ``force (B,)`` set
        are refreshed completely (their probe error reads 0). Same returns as :meth:`sparse`."""
        c, B, T, d, K, P = self.cache, self.B, self.T, self.d, self.K, self.P
        tf = self.net.time_features(t)
        h0 = self.net.embed(z, t, tf)
        idx = self._select(z, probes)
        rule = index_mask(torch.cat([idx[:, :K + 1], idx[:, K + 1 + P:]], dim=1), T, self._rule)
        rule = rule | force[:, None]
        sel = index_mask(idx, T, self._sel) | force[:, None]
        h = run_layers(self.blocks, h0, c.k, c.v, torch.where(sel, self.arange_t, -1))
        fresh = h - h0
        if P:
            pidx = idx[:, K + 1:K + 1 + P]
            c_probe = fresh.gather(1, pidx[..., None].expand(B, P, d))
            err = self._feedback(c_probe, pidx, alpha)
            err = torch.where(force, torch.zeros_like(err), err)
        else:
            err = torch.zeros_like(self.err)
        torch.where(rule[..., None], fresh, c.crf, out=c.crf)
        torch.where(rule[..., None], z, c.z_ref, out=c.z_ref)
        torch.add(h0, c.crf, out=self.feat)
        torch.where(sel[..., None], h, self.feat, out=self.feat)
        eps = self.net.head(self.feat)
        if self.cached_output != "features":
            eps = self._output(z, t, eps, sel)
        return self._finish(eps, z, t, tf), err


CACHED_OUTPUTS = ("features", "gaussian")


def budget_size(budget: float, num_tokens: int, K: int, num_probes: int) -> int:
    """Tokens per sample for a budget given as a fraction of ``N'`` (at least band + probes)."""
    return min(num_tokens, max(K + 1 + num_probes, int(math.ceil(budget * num_tokens - 1e-9))))
