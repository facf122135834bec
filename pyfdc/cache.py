"""``KVCache``: the persistent per-layer state of one E2-CRF sampling run.

A small Python class that allocates its tensors once and lets the compiled ops mutate them in
place (the ops declare the mutation in their schemas). Why Python-owned rather than a C++ class:
fake tensors, ``torch.library.opcheck`` and ``torch.compile`` see plain tensors, checkpointing is
``state_dict()``, and nothing needs a custom-class pickling or fake-class registration — the
same shape as vLLM's ``reshape_and_cache`` and causal-conv1d's ``conv_state``.

Shapes: ``L`` layers, ``B`` samples, ``H`` heads, ``N'`` half-spectrum tokens, ``dh`` head width,
``d = H·dh`` model width, ``C = 2M`` token width.
"""
from __future__ import annotations

import torch

from . import ops


class KVCache:
    """Per-layer half-spectrum K/V cache plus the E2-CRF bookkeeping of one sampling run.

    Tensors (allocated once, reused across steps; ``reset()`` clears them):

    * ``k``, ``v``: ``(L, B, H, N', dh)`` keys and values of every token at its last recompute.
    * ``crf``: ``(B, N', d)`` cumulative residual features (App. A.6.1) of each token.
    * ``z_ref``: ``(B, N', C)`` each token's input at its last recompute (δ of Eq. (13)).
    * ``last_refresh``: ``(B, N')`` int64 step of each token's last recompute, ``-1`` = never.
    * ``idx``, ``count``: ``(B, N')`` / ``(B,)`` int64 workspace for :meth:`select`.
    * ``err``: ``(B,)`` workspace for :meth:`error_feedback`.
    """

    def __init__(self, num_layers: int, batch_size: int, num_heads: int, num_tokens: int, head_dim: int,
                 token_dim: int, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        L, B, H, T, dh = num_layers, batch_size, num_heads, num_tokens, head_dim
        if min(L, B, H, T, dh, token_dim) < 1:
            raise ValueError(
                f"KVCache: every size must be >= 1, got num_layers={L}, batch_size={B}, num_heads={H}, "
                f"num_tokens={T}, head_dim={dh}, token_dim={token_dim}"
            )
        kw = {"device": device, "dtype": dtype}
        self.k = torch.zeros(L, B, H, T, dh, **kw)
        self.v = torch.zeros(L, B, H, T, dh, **kw)
        self.crf = torch.zeros(B, T, H * dh, **kw)
        self.z_ref = torch.zeros(B, T, token_dim, **kw)
        self.last_refresh = torch.full((B, T), -1, dtype=torch.int64, device=device)
        self.idx = torch.full((B, T), -1, dtype=torch.int64, device=device)
        self.count = torch.zeros(B, dtype=torch.int64, device=device)
        self.err = torch.zeros(B, **kw)
        self._refreshed = torch.zeros(B, T + 1, dtype=torch.bool, device=device)  # column N' = padding

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(L, B, H, N', dh)``."""
        return tuple(self.k.shape)

    def layer(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``(K, V)`` of one layer, each ``(B, H, N', dh)``, for attention over all tokens."""
        return self.k[layer], self.v[layer]

    def scatter(self, layer: int, idx: torch.Tensor, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        """Write fresh rows ``k_new, v_new (B, H, k, dh)`` at tokens ``idx (B, k)`` (-1 = pad) of ``layer``."""
        ops.kv_scatter(self.k, self.v, layer, idx, k_new, v_new)

    def select(self, z: torch.Tensor, probe_mask: torch.Tensor, force: torch.Tensor, K: int, tau0: float,
               eps: float, energy_weighted: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Recompute set for tokens ``z (B, N', C)`` against ``z_ref``; returns the ``idx``/``count`` workspace."""
        return ops.select_tokens(z, self.z_ref, probe_mask, force, K, tau0, eps, energy_weighted,
                                 idx_out=self.idx, count_out=self.count)

    def error_feedback(self, fresh: torch.Tensor, idx: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Correct ``crf`` at probe rows ``idx (B, k)`` towards ``fresh (B, k, d)``; returns ``err (B,)``."""
        return ops.error_feedback(self.crf, fresh, idx, alpha, err_out=self.err)

    def mark_refreshed(self, idx: torch.Tensor, z: torch.Tensor, step: int) -> None:
        """Record that tokens ``idx (B, k)`` (-1 = pad) were recomputed at ``step`` from inputs ``z (B, N', C)``."""
        T = self.z_ref.shape[1]
        mark = self._refreshed
        mark.zero_()
        mark.scatter_(1, torch.where(idx >= 0, idx, T), True)
        mask = mark[:, :T]
        torch.where(mask[:, :, None], z, self.z_ref, out=self.z_ref)
        self.last_refresh.masked_fill_(mask, step)

    def reset(self) -> None:
        """Forget everything (start of a new sampling run); no reallocation."""
        for t in (self.k, self.v, self.crf, self.z_ref, self.count, self.err):
            t.zero_()
        self.last_refresh.fill_(-1)
        self.idx.fill_(-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The cache's tensors by name (for checkpointing or inspection)."""
        return {name: getattr(self, name) for name in
                ("k", "v", "crf", "z_ref", "last_refresh", "idx", "count", "err")}
