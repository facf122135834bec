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



class KVCache:
    """Per-layer half-spectrum K/V cache plus the E2-CRF bookkeeping of one sampling run.

    Tensors (allocated once, reused across steps; ``reset()`` clears them):

    * ``k``, ``v``: ``(L, B, H, N', dh)`` keys and values of every token at its last recompute.
    * ``crf``: ``(B, N', d)`` cumulative residual features (App. A.6.1) of each token.
    * ``z_ref``: ``(B, N', C)`` each token's input at its last recompute (δ of Eq. (13)).
    * ``idx``, ``count``: ``(B, N')`` / ``(B,)`` int64 outputs of :func:`pyfdc.ops.select_tokens`.
    * ``err``: ``(B,)`` output of :func:`pyfdc.ops.error_feedback`.

    The ops write into these tensors in place (``idx_out=``, ``err_out=``); the cached forwards
    (:mod:`pyfdc.e2crf.step`) own the step logic.
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
        self.idx = torch.full((B, T), -1, dtype=torch.int64, device=device)
        self.count = torch.zeros(B, dtype=torch.int64, device=device)
        self.err = torch.zeros(B, **kw)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(L, B, H, N', dh)``."""
        return tuple(self.k.shape)

    def reset(self) -> None:
        """Forget everything (start of a new sampling run); no reallocation."""
        for t in (self.k, self.v, self.crf, self.z_ref, self.count, self.err):
            t.zero_()
        self.idx.fill_(-1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The cache's tensors by name (for checkpointing or inspection)."""
        return {name: getattr(self, name) for name in
                ("k", "v", "crf", "z_ref", "idx", "count", "err")}
