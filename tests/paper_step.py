"""The E2-CRF cached forward of a :class:`~pyfdc.core.score_net.ScoreTransformer` (``architecture.md`` §4).

One call evaluates ε̂ for a batch whose per-sample recompute sets are given as padded index rows.
Recomputed tokens run every layer (QKV, attention rows over the whole persistent K/V cache, out-proj,
FFN); their K/V are scattered into the cache with :func:`pyfdc.ops.kv_scatter`. Cached tokens skip
all layers: their final feature is the fresh embedding plus their cached cumulative residual,
``h0(i)[κ] + C[κ]``. The output head runs on all tokens.

Batch layout: when samples recompute different numbers of tokens, the row-wise work (LayerNorms,
QKV, FFN — most of the FLOPs) runs on the *packed* valid rows ``(nnz, d)``; only attention uses the
padded ``(B, H, kmax, dh)`` layout. So the cost follows the mean recomputed fraction, not the max.
A full refresh (every token of every sample) takes a dense path with no gathers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyfdc import ops
from pyfdc.e2crf.kv_cache import KVCache
from pyfdc.e2crf.layers import index_mask, run_layers


def _nbytes(*tensors: Tensor) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


class CachedForward:
    """Persistent per-run state + the token-sparse forward for one batch of ``B`` samples.

    State (allocated once): a :class:`pyfdc.cache.KVCache` — ``k, v (L, B, H, T, dh)``, cumulative
    residual ``crf (B, T, d)``, reference inputs ``z_ref (B, T, C)``, selection workspaces
    ``idx (B, T)``, ``count (B,)``, ``err (B,)`` — plus the slab index ``gidx (B, T + P)``, the
    packed-row map, padded Q/K/V staging ``(B, T + P, H, dh)`` and the final features ``feat (B, T, d)``.
    """

    def __init__(self, net: nn.Module, batch: int, num_tokens: int, token_dim: int, *,
                 naive_kv: bool = False, max_probes: int = 8, dense_fraction: float = 0.85, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        self.net = net
        self.blocks = list(net.blocks)
        self.naive_kv = naive_kv
        self.dense_fraction = dense_fraction
        p = next(net.parameters())
        self.device = torch.device(device) if device is not None else p.device
        B, T = batch, num_tokens
        with torch.no_grad():
            h = net.embed(torch.zeros(1, T, token_dim, dtype=dtype, device=self.device),
                          torch.full((1,), 0.5, dtype=dtype, device=self.device))
            _, k, _ = self.blocks[0].qkv_heads(h)
        self.d, self.H, self.dh, self.L = h.shape[-1], k.shape[1], k.shape[-1], len(self.blocks)
        self.B, self.T, self.C = B, T, token_dim
        self.cache = KVCache(self.L, B, self.H, T, self.dh, token_dim, device=self.device, dtype=dtype)
        c = self.cache
        self.k_cache, self.v_cache, self.crf, self.z_ref = c.k, c.v, c.crf, c.z_ref
        self.idx, self.count, self.err = c.idx, c.count, c.err
        self.feat = torch.zeros(B, T, self.d, dtype=dtype, device=self.device)
        self.gidx = torch.full((B, T + max_probes), -1, dtype=torch.int64, device=self.device)
        self.arange_p = torch.arange(max_probes, device=self.device)
        self.rule_mask = torch.zeros(B, T + 1, dtype=torch.bool, device=self.device)
        self.sel_mask = torch.zeros(B, T + 1, dtype=torch.bool, device=self.device)
        self.arange_t = torch.arange(T, device=self.device)
        self.rowmap = torch.full((B, T + max_probes), -1, dtype=torch.int64, device=self.device)
        pad = (B, T + max_probes, self.H, self.dh)
        self.q_pad, self.k_pad, self.v_pad = (torch.zeros(pad, dtype=dtype, device=self.device) for _ in range(3))
        self.max_probes = max_probes
        if naive_kv:
            self._check_qkv_layout(h)

    @property
    def cache_bytes(self) -> int:
        return _nbytes(*self.cache.state_dict().values(), self.feat, self.gidx, self.rowmap,
                       self.q_pad, self.k_pad, self.v_pad)

    # ---------------------------------------------------------------- naive KV helpers
    def _q_heads(self, blk: nn.Module, x: Tensor) -> Tensor:
        """Q only: ``x`` (B,S,d) already layer-normed -> (B,H,S,dh) (first d rows of ``qkv``)."""
        d = self.d
        w, b = blk.qkv.weight[:d], (blk.qkv.bias[:d] if blk.qkv.bias is not None else None)
        B, S, _ = x.shape
        return F.linear(x, w, b).view(B, S, self.H, self.dh).transpose(1, 2)

    def _kv_heads(self, blk: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
        d = self.d
        w = blk.qkv.weight[d:]
        b = blk.qkv.bias[d:] if blk.qkv.bias is not None else None
        B, S, _ = x.shape
        kv = F.linear(x, w, b).view(B, S, 2, self.H, self.dh)
        return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)

    def _check_qkv_layout(self, h: Tensor) -> None:
        blk = self.blocks[0]
        with torch.no_grad():
            x = torch.randn_like(h)
            q, k, v = blk.qkv_heads(x)
            xn = blk.ln1(x)
            q2 = self._q_heads(blk, xn)
            k2, v2 = self._kv_heads(blk, xn)
        if not (torch.allclose(q, q2, atol=1e-5) and torch.allclose(k, k2, atol=1e-5)
                and torch.allclose(v, v2, atol=1e-5)):
            raise NotImplementedError("naive_kv: Block.qkv is not laid out as [q | k | v] heads-major")

    # ---------------------------------------------------------------- the step
    @torch.no_grad()
    def __call__(self, z: Tensor, t: Tensor, idx: Tensor, count: Tensor, probes: Tensor | None,
                 alpha: Tensor, eta: float) -> tuple[Tensor, Tensor | None, Tensor]:
        """Cached ε̂.

        z (B,T,C), t (B,); idx (B,T) int64 ascending rule-selected tokens padded with -1, count (B,);
        probes (B,P) int64 (-1 = none) or None; alpha (B,) Eq. 14 step sizes.
        Returns ``eps_hat (B,T,C)``, relative probe error ``e (B,)`` (or None) and the final-layer
        features ``feat (B,T,d)`` (a persistent buffer, overwritten next call).
        """
        B, T, d = self.B, self.T, self.d
        h0 = self.net.embed(z, t)                                   # (B,T,d)
        gidx = self.gidx
        gidx[:, :T].copy_(idx)
        gidx[:, T:].fill_(-1)
        total = count
        pos = None
        if probes is not None:
            # valid probes first, padding last: the slab rows of the probes are count + 0..n_valid-1
            probes = torch.sort(probes, dim=1, descending=True).values
            P = probes.shape[1]
            if P > self.max_probes:
                raise ValueError(f"CachedForward: at most {self.max_probes} probes, got {P}")
            pos = count[:, None] + self.arange_p[:P]                # slab rows of the probes
            gidx.scatter_(1, pos, probes)
            total = count + (probes >= 0).sum(dim=1)
        kmax = int(total.max()) if B > 0 else 0
        if self.naive_kv:
            feat = self._naive_kv(h0, gidx[:, :kmax].contiguous(), z)
            return self.net.head(feat), None, feat
        if int(count.min()) == T:                                  # full refresh: no probe is left
            eps_hat, _, feat = self._refresh_all(h0, z)
            return eps_hat, (torch.zeros(B, dtype=z.dtype, device=z.device) if probes is not None else None), feat
        if int(total.sum()) >= self.dense_fraction * B * T:        # cheaper to compute every row
            return self._masked_dense(h0, z, idx, probes, alpha, eta)
        feat = torch.add(h0, self.crf, out=self.feat)               # cached tokens: h0(i) + C
        if kmax == 0:
            return self.net.head(feat), (torch.zeros(B, device=z.device) if probes is not None else None), feat
        gi = gidx[:, :kmax].contiguous()                            # (B,kmax), -1 padded
        valid = gi >= 0
        pb, ps = valid.nonzero(as_tuple=True)                       # packed rows: sample, slab slot
        tok = gi[pb, ps]
        if pb.numel() == B * kmax:                                  # no padding (e.g. B = 1): slab as is
            h0p = h0.gather(1, gi[..., None].expand(B, kmax, d))
            hp = self._layers_slab(h0p, gi).reshape(-1, d)
            h0p = h0p.reshape(-1, d)
        else:                                                       # row-wise work on packed rows only
            h0p = h0[pb, tok]
            hp = self._layers_packed(h0p, gi, pb, ps)
        c = hp - h0p                                                # fresh cumulative residual (nnz,d)
        err = None
        if probes is not None:
            rowmap = self.rowmap[:, :kmax]
            rowmap.fill_(-1)                                        # no stale rows from earlier steps
            rowmap[pb, ps] = torch.arange(pb.numel(), device=pb.device)
            pv = probes >= 0
            rows = rowmap.gather(1, pos.clamp(max=kmax - 1))        # (B,P) packed row of each probe
            fresh_p = c[rows.clamp(min=0)] * pv[..., None]          # (B,P,d)
            e = ops.error_feedback(self.crf, fresh_p, probes, alpha, err_out=self.err)  # Eq. 14 nudge
            err = e.pow(2) / (fresh_p.pow(2).sum(dim=(1, 2)) + eta)
        rule = ps < count[pb]                                       # rule-selected (not probe) rows
        rb, rt = pb[rule], tok[rule]
        self.crf[rb, rt] = c[rule]
        self.z_ref[rb, rt] = z[rb, rt]
        feat[pb, tok] = hp
        return self.net.head(feat), err, feat

    def _layers_slab(self, h: Tensor, gi: Tensor) -> Tensor:
        """All layers on a dense slab ``h (B,kmax,d)`` of recomputed tokens ``gi (B,kmax)``."""
        return run_layers(self.blocks, h, self.k_cache, self.v_cache, gi)

    def _layers_packed(self, hp: Tensor, gi: Tensor, pb: Tensor, ps: Tensor) -> Tensor:
        """All layers with row-wise work (LN, QKV, FFN) on packed rows ``hp (nnz,d)``.

        Only attention needs per-sample structure: Q/K/V rows are placed into persistent padded
        ``(B, T, H, dh)`` buffers (slots ``(pb, ps)``); padded slots hold stale finite values, their
        K/V are skipped by ``kv_scatter`` (index -1) and their attention rows are dropped.
        """
        B, kmax = gi.shape
        for layer, blk in enumerate(self.blocks):
            q, k, v = blk.qkv_heads(hp[None])                       # (1,H,nnz,dh)
            for pad, x in ((self.q_pad, q), (self.k_pad, k), (self.v_pad, v)):
                pad[pb, ps] = x[0].transpose(0, 1)                   # (nnz,H,dh)
            ops.kv_scatter(self.k_cache, self.v_cache, layer, gi,
                           self.k_pad[:, :kmax].transpose(1, 2), self.v_pad[:, :kmax].transpose(1, 2))
            a = blk.attn_residual(self.q_pad[:, :kmax].transpose(1, 2), self.k_cache[layer], self.v_cache[layer])
            hp = hp + a[pb, ps]
            hp = hp + blk.ffn_residual(hp[None])[0]
        return hp

    def _masked_dense(self, h0: Tensor, z: Tensor, idx: Tensor, probes: Tensor | None, alpha: Tensor,
                      eta: float) -> tuple[Tensor, Tensor | None, Tensor]:
        """Same result as the gathered path, computed densely: every row runs every layer, but only
        the selected rows write K/V (``kv_scatter`` with a diagonal index, -1 elsewhere), CRF and
        references, and only their outputs are used — cached rows still read ``h0 + C``. Used when
        the selection covers most tokens, where gathers/scatters would cost more than they save.
        Row-for-row the same math, so batch invariance is unaffected by which path a batch takes.
        """
        B, T, d = self.B, self.T, self.d
        rule_t = index_mask(idx, T, self.rule_mask)
        sel_t = rule_t if probes is None else rule_t | index_mask(probes, T, self.sel_mask)
        didx = torch.where(sel_t, self.arange_t, -1)                # row κ -> token κ when selected
        h = run_layers(self.blocks, h0, self.k_cache, self.v_cache, didx)
        c = h - h0
        err = None
        if probes is not None:
            pv = probes >= 0
            fresh_p = c.gather(1, probes.clamp(min=0)[..., None].expand(B, probes.shape[1], d)) * pv[..., None]
            e = ops.error_feedback(self.crf, fresh_p, probes, alpha, err_out=self.err)  # Eq. 14 nudge
            err = e.pow(2) / (fresh_p.pow(2).sum(dim=(1, 2)) + eta)
        torch.where(rule_t[..., None], c, self.crf, out=self.crf)
        torch.where(rule_t[..., None], z, self.z_ref, out=self.z_ref)
        torch.add(h0, self.crf, out=self.feat)
        torch.where(sel_t[..., None], h, self.feat, out=self.feat)
        return self.net.head(self.feat), err, self.feat

    def _refresh_all(self, h0: Tensor, z: Tensor) -> tuple[Tensor, None, Tensor]:
        """Every token of every sample recomputed: the plain forward, writing the cache densely.

        Same math as the gathered path with the identity index (no gather/scatter overhead).
        """
        h = run_layers(self.blocks, h0, self.k_cache, self.v_cache, None)
        torch.sub(h, h0, out=self.crf)
        self.z_ref.copy_(z)
        self.feat.copy_(h)
        return self.net.head(self.feat), None, self.feat

    def _naive_kv(self, h0: Tensor, gi: Tensor, z: Tensor) -> Tensor:
        """Plain KV cache: every token runs everything except the K/V projections of cached tokens."""
        B, kmax, d = gi.shape[0], gi.shape[1], self.d
        valid = gi >= 0
        gc = gi.clamp(min=0)
        h = h0
        for layer, blk in enumerate(self.blocks):
            x = blk.ln1(h)
            q = self._q_heads(blk, x)
            if kmax > 0:
                xs = torch.gather(x, 1, gc[..., None].expand(B, kmax, d))
                k, v = self._kv_heads(blk, xs)
                ops.kv_scatter(self.k_cache, self.v_cache, layer, gi, k, v)
            h = h + blk.attn_residual(q, self.k_cache[layer], self.v_cache[layer])
            h = h + blk.ffn_residual(h)
        vb, vs = valid.nonzero(as_tuple=True)
        tok = gi[vb, vs]
        self.z_ref[vb, tok] = z[vb, tok]
        self.feat.copy_(h)
        return self.feat
