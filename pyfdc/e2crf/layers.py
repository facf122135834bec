"""Building blocks shared by the cached forwards (:mod:`pyfdc.e2crf.step`):
the per-layer loop over a persistent K/V cache, and the index-row -> token-mask scatter."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pyfdc import ops


def run_layers(blocks: list[nn.Module], h: Tensor, k_cache: Tensor, v_cache: Tensor, idx: Tensor | None,
               first: int = 0) -> Tensor:
    """The blocks on rows ``h (B, S, d)``, attending over the persistent cache.

    ``idx (B, S)`` names the token each row writes its K/V to (-1 = write nothing); ``None`` means
    the rows are all ``N'`` tokens in order (a dense refresh: the layer's cache is overwritten).
    ``first``: the cache layer of ``blocks[0]`` (when ``blocks`` is a slice of the network's).
    """
    for layer, blk in enumerate(blocks, start=first):
        q, k, v = blk.qkv_heads(h)
        if idx is None:
            k_cache[layer].copy_(k)
            v_cache[layer].copy_(v)
        else:
            ops.kv_scatter(k_cache, v_cache, layer, idx, k, v)
        h = h + blk.attn_residual(q, k_cache[layer], v_cache[layer])
        h = h + blk.ffn_residual(h)
    return h


def index_mask(idx: Tensor, num_tokens: int, out: Tensor) -> Tensor:
    """``out (B, N' + 1)`` bool, set where a token appears in ``idx (B, S)`` (-1 entries land in the
    spare last column); returns the ``(B, N')`` view."""
    out.zero_()
    out.scatter_(1, torch.where(idx < 0, num_tokens, idx), True)
    return out[:, :num_tokens]
