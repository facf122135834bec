"""The tiny untrained diffusion model the sampler tests share (imported by the test modules)."""
from __future__ import annotations

import pytest
import torch

from pyfdc.core.model import DiffusionModel
from pyfdc.core.score_net import ModelConfig, ScoreTransformer
from pyfdc.core.sde import VPSDE
from pyfdc.core.spectral import make_transform

N, M = 32, 1
T = N // 2 + 1


def tiny_model(seed: int = 0, dtype: torch.dtype = torch.float32, kind: str = "freq") -> DiffusionModel:
    """2 layers, d 32, N = 32 -> N' = 17 frequency tokens (``kind="time"``: 32 time-step tokens), M = 1;
    output scaled by 0.1 so untrained EM trajectories stay O(1) (a random head is far from ε)."""
    torch.manual_seed(seed)
    tr = make_transform(kind, N, M)
    cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=32, n_layers=2, n_heads=4, d_ff=64, rff_dim=16)
    net = ScoreTransformer(cfg, tr.mask())
    with torch.no_grad():
        net.out_proj.weight.mul_(0.1)
    return DiffusionModel(net.to(dtype).eval(), tr, VPSDE())


def head_model(kind: str = "freq", m: int = 2, width: int = 8, seed: int = 0, trained_head: bool = True,
               n: int = 48) -> DiffusionModel:
    """A tiny untrained model with a time-domain head: ``n`` steps × ``m`` channels, head width ``width``;
    ``trained_head`` gives the head's last convolution random weights (a fresh head adds exactly 0)."""
    torch.manual_seed(seed)
    tr = make_transform(kind, n, m)
    cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=32, n_layers=2, n_heads=4, d_ff=64, rff_dim=16,
                      time_head=width, series_channels=m)
    net = ScoreTransformer(cfg, tr.mask())
    with torch.no_grad():
        net.out_proj.weight.mul_(0.1)
        if trained_head:   # a fresh head adds exactly 0; give it weights so its effect is visible
            net.time_head.out.weight.normal_(0, 0.1)
    return DiffusionModel(net.eval(), tr, VPSDE())


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread for the test (exactness tests compare runs with the same matmul blocking)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
