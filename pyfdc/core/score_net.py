"""Transformer encoder predicting the noise ``eps_hat (B, T, C)`` from tokens ``z_t (B, T, C)`` and ``t (B,)``.

Written so any layer can run on a gathered token subset ``S`` against full-length K/V (the E2-CRF
cached step): :class:`Block` exposes ``qkv_heads``, ``attn_residual`` and ``ffn_residual`` as pure
functions of their inputs, and :class:`ScoreTransformer` exposes ``embed`` and ``head``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyfdc.core.time_head import TimeHead

__all__ = ["ModelConfig", "Block", "ScoreTransformer"]


@dataclass
class ModelConfig:
    """Score-network hyper-parameters. ``num_tokens`` = T, ``token_dim`` = C."""

    num_tokens: int
    token_dim: int
    d_model: int = 72
    n_layers: int = 10
    n_heads: int = 12
    d_ff: int = 2048
    rff_dim: int = 32
    rff_scale: float = 16.0
    # width of the time-domain head (pyfdc.core.time_head); 0 = none. It needs the series' channels M.
    time_head: int = 0
    series_channels: int = 0

    # fields added after the first checkpoints: a saved model config may lack them (then their defaults)
    OPTIONAL_FIELDS = ("time_head", "series_channels")

    def __post_init__(self) -> None:
        for name in ("num_tokens", "token_dim", "d_model", "n_layers", "n_heads", "d_ff", "rff_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {v!r}")
        for name in ("time_head", "series_channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"ModelConfig.{name} must be an int >= 0, got {v!r}")
        if self.time_head and not self.series_channels:
            raise ValueError("ModelConfig.time_head needs series_channels (the series' channels M)")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.rff_dim % 2:
            raise ValueError(f"ModelConfig.rff_dim must be even (sin and cos halves), got {self.rff_dim}")
        s = self.rff_scale
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s <= 0:
            raise ValueError(f"ModelConfig.rff_scale must be a finite number > 0, got {s!r}")

    @classmethod
    def paper(cls, num_tokens: int, token_dim: int) -> "ModelConfig":
        """The paper's network: 10 layers, 12 heads, d_model 72, FFN 2048 (~3.2M params on ECG)."""
        return cls(num_tokens, token_dim, d_model=72, n_layers=10, n_heads=12, d_ff=2048)

    @classmethod
    def small(cls, num_tokens: int, token_dim: int) -> "ModelConfig":
        """CPU-sized network: 4 layers, 4 heads, d_model 64, FFN 256."""
        return cls(num_tokens, token_dim, d_model=64, n_layers=4, n_heads=4, d_ff=256)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """The fields; the optional ones only when set, so a model without them saves as it always did."""
        d = asdict(self)
        return {k: v for k, v in d.items() if k not in self.OPTIONAL_FIELDS or v}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"ModelConfig.from_dict: unknown keys {sorted(unknown)}")
        return cls(**d)


class Block(nn.Module):
    """Pre-norm encoder block: ``h + Attn(LN1 h)``, then ``+ FFN(LN2 .)``."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)

    def qkv_heads(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``h (B, S, d)`` -> ``q, k, v`` each ``(B, H, S, dh)`` (applies ``ln1``)."""
        b, s, _ = h.shape
        qkv = self.qkv(self.ln1(h)).view(b, s, 3, self.n_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def attn_residual(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``q (B, H, S, dh)`` attending over ``k, v (B, H, T, dh)`` -> residual ``(B, S, d)`` (sdpa + merge + proj)."""
        if torch.compiler.is_compiling():   # written out, it fuses; the flash kernel is ~50 us a call at these sizes
            o = torch.softmax((q * self.head_dim ** -0.5) @ k.transpose(-2, -1), dim=-1) @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        b, _, s, _ = o.shape
        return self.proj(o.transpose(1, 2).reshape(b, s, self.n_heads * self.head_dim))

    def ffn_residual(self, h: Tensor) -> Tensor:
        """``(B, S, d) -> (B, S, d)``: ``ff2(gelu(ff1(ln2 h)))``."""
        return self.ff2(F.gelu(self.ff1(self.ln2(h))))

    def forward(self, h: Tensor) -> Tensor:
        q, k, v = self.qkv_heads(h)
        h = h + self.attn_residual(q, k, v)
        return h + self.ffn_residual(h)


class ScoreTransformer(nn.Module):
    """Noise-prediction transformer ``(z (B, T, C), t (B,)) -> eps_hat (B, T, C)``.

    ``h0 = in_proj(z) + pos + time_mlp(rff(t))``; ``L`` pre-norm blocks; ``eps_hat = out_proj(ln_f(h_L)) * mask``
    where ``mask (T, C)`` (a persistent buffer) zeroes pinned coordinates.
    """

    def __init__(self, config: ModelConfig, mask: Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        t, c, d = config.num_tokens, config.token_dim, config.d_model
        if mask is None:
            mask = torch.ones(t, c)
        if not isinstance(mask, Tensor) or tuple(mask.shape) != (t, c):
            raise ValueError(f"mask must have shape (T, C) = ({t}, {c}), got {tuple(getattr(mask, 'shape', ()))}")
        self.register_buffer("mask", mask.detach().to(torch.float32).clone())
        # Gaussian random Fourier features of t (fixed, saved with the weights)
        self.register_buffer("rff_freqs", torch.randn(config.rff_dim // 2) * config.rff_scale)
        self.time_mlp = nn.Sequential(nn.Linear(config.rff_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.in_proj = nn.Linear(c, d)
        self.pos = nn.Parameter(torch.randn(t, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, config.n_heads, config.d_ff) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, c)
        self.time_head = TimeHead(config.series_channels, config.time_head, d) if config.time_head else None
        # exact noise prediction on pinned coordinates (pyfdc.core.pinning), attached by DiffusionModel
        self.pin_projector: nn.Module | None = None

    def time_features(self, t: Tensor) -> Tensor:
        """``t (B,)`` -> ``(B, d)``: ``time_mlp([sin(2 pi f t), cos(2 pi f t)])``."""
        ang = (2 * math.pi) * t[:, None].to(self.rff_freqs.dtype) * self.rff_freqs
        return self.time_mlp(torch.cat([ang.sin(), ang.cos()], dim=-1))

    def embed(self, z: Tensor, t: Tensor, t_features: Tensor | None = None) -> Tensor:
        """``z (B, T, C), t (B,)`` -> ``h0 (B, T, d) = in_proj(z) + pos + time_mlp(rff(t))[:, None]``;
        ``t_features (B, d)``: :meth:`time_features` of ``t`` when the caller has them already."""
        tf = self.time_features(t) if t_features is None else t_features
        return self.in_proj(z) + self.pos + tf[:, None, :]

    def head(self, h: Tensor) -> Tensor:
        """``h (B, T, d)`` -> ``eps_hat (B, T, C) = out_proj(ln_f(h)) * mask``."""
        return self.out_proj(self.ln_f(h)) * self.mask

    def forward(self, z: Tensor, t: Tensor) -> Tensor:
        """``z (B, T, C)``, ``t (B,)`` or scalar -> ``eps_hat (B, T, C)``."""
        cfg = self.config
        if z.dim() != 3 or z.shape[1] != cfg.num_tokens or z.shape[2] != cfg.token_dim:
            raise ValueError(
                f"z must have shape (B, T={cfg.num_tokens}, C={cfg.token_dim}), got {tuple(z.shape)}"
            )
        if t.dim() == 0:
            t = t.expand(z.shape[0])
        elif t.shape != (z.shape[0],):
            raise ValueError(f"t must have shape (B,) = ({z.shape[0]},) or be a scalar, got {tuple(t.shape)}")
        tf = self.time_features(t)
        h = self.embed(z, t, tf)
        for blk in self.blocks:
            h = blk(h)
        return self.finish(self.head(h), z, t, tf)

    def finish(self, eps: Tensor, z: Tensor, t: Tensor, t_features: Tensor | None = None) -> Tensor:
        """The head's ``eps (B, T, C)`` -> the prediction: the time-domain head's refinement (when configured),
        then the pinned coordinates' exact noise (when attached). ``z (B, T, C)``, ``t (B,)`` or scalar;
        ``t_features (B, d)`` as in :meth:`embed`."""
        if self.time_head is not None:
            if t_features is None:
                t_features = self.time_features(t.expand(z.shape[0]) if t.dim() == 0 else t)
            eps = self.time_head(eps, z, t_features, self.mask)
        return eps if self.pin_projector is None else self.pin_projector(eps, z, t)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
