"""Score transformer: configs, parameter count, shapes, and the split-method / token-subset properties."""
from __future__ import annotations

import pytest
import torch

from pyfdc.core.score_net import Block, ModelConfig, ScoreTransformer
from pyfdc.core.spectral import make_transform


def _net(kind: str = "freq", n: int = 12, m: int = 2, seed: int = 0) -> ScoreTransformer:
    torch.manual_seed(seed)
    tr = make_transform(kind, n, m)
    cfg = ModelConfig(tr.num_tokens, tr.token_dim, d_model=32, n_layers=3, n_heads=4, d_ff=64)
    return ScoreTransformer(cfg, tr.mask()).eval()


def _inputs(net: ScoreTransformer, b: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cfg = net.config
    z = torch.randn(b, cfg.num_tokens, cfg.token_dim, generator=g) * net.mask
    return z, torch.rand(b, generator=g)


def test_paper_config_parameter_count_on_ecg_shape() -> None:
    tr = make_transform("freq", 187, 1)  # 94 tokens x 2
    cfg = ModelConfig.paper(tr.num_tokens, tr.token_dim)
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_ff) == (10, 12, 72, 2048)
    n = ScoreTransformer(cfg, tr.mask()).num_parameters()
    assert abs(n - 3.2e6) <= 0.05 * 3.2e6, n


def test_small_config_and_dict_round_trip() -> None:
    cfg = ModelConfig.small(10, 4)
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_ff, cfg.head_dim) == (4, 4, 64, 256, 16)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"d_model": 70, "n_heads": 12}, r"d_model \(70\) must be divisible by n_heads \(12\)"),
        ({"n_layers": 0}, "n_layers must be a positive int"),
        ({"num_tokens": 2.5}, "num_tokens must be a positive int"),
        ({"rff_dim": 7}, "rff_dim must be even"),
        ({"rff_scale": 0.0}, "rff_scale must be a finite number > 0"),
        ({"rff_scale": float("nan")}, "rff_scale must be a finite number > 0"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    base = {"num_tokens": 5, "token_dim": 2}
    with pytest.raises(ValueError, match=match):
        ModelConfig(**{**base, **kwargs})


@pytest.mark.parametrize("kind", ["freq", "time", "chart"])
def test_forward_shapes_and_pinned_outputs(kind: str) -> None:
    net = _net(kind)
    z, t = _inputs(net)
    out = net(z, t)
    assert out.shape == z.shape
    assert torch.equal(out[:, net.mask == 0], torch.zeros_like(out[:, net.mask == 0]))
    assert torch.equal(net(z, t[0]), net(z, t[0].expand(5)))  # scalar t broadcasts


def test_forward_bad_shapes() -> None:
    net = _net()
    z, t = _inputs(net)
    with pytest.raises(ValueError, match=r"z must have shape \(B, T=7, C=4\)"):
        net(z[:, :6], t)
    with pytest.raises(ValueError, match=r"t must have shape \(B,\) = \(5,\)"):
        net(z, t[:3])
    with pytest.raises(ValueError, match=r"mask must have shape \(T, C\) = \(7, 4\)"):
        ScoreTransformer(net.config, torch.ones(7, 2))
    with pytest.raises(TypeError, match="config must be a ModelConfig"):
        ScoreTransformer({"num_tokens": 7})  # type: ignore[arg-type]


def test_split_methods_reproduce_forward_exactly() -> None:
    net = _net()
    z, t = _inputs(net)
    with torch.no_grad():
        h = net.embed(z, t)
        for blk in net.blocks:
            q, k, v = blk.qkv_heads(h)
            assert q.shape == k.shape == v.shape == (5, 4, 7, 8)
            h = h + blk.attn_residual(q, k, v)
            h = h + blk.ffn_residual(h)
        assert torch.equal(net.head(h), net(z, t))  # identical op sequence -> bitwise equal


def test_token_subset_against_full_kv_matches_full_rows() -> None:
    """Per-sample subsets S_b computed against full K/V equal rows S_b of the full layer."""
    net = _net(n=20)
    z, t = _inputs(net, b=4)
    idx = torch.tensor([[0, 1, 5], [2, 3, 10], [0, 7, 8], [9, 10, 1]])  # (B, S), unsorted allowed
    gather = lambda x: torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    with torch.no_grad():
        h = net.embed(z, t)
        for blk in net.blocks:
            q, k, v = blk.qkv_heads(h)
            a_full = blk.attn_residual(q, k, v)
            h_mid = h + a_full
            h_next = h_mid + blk.ffn_residual(h_mid)
            h_s = gather(h)
            q_s, k_s, v_s = blk.qkv_heads(h_s)
            # fresh K/V of the subset equal the gathered full K/V (row-wise ops); default tolerances:
            # only the matmul blocking may differ between the S-row and T-row problems.
            head_idx = idx[:, None, :, None].expand(-1, blk.n_heads, -1, blk.head_dim)
            torch.testing.assert_close(k_s, torch.gather(k, 2, head_idx))
            torch.testing.assert_close(v_s, torch.gather(v, 2, head_idx))
            a_s = blk.attn_residual(q_s, k, v)
            assert a_s.shape == (4, 3, net.config.d_model)
            torch.testing.assert_close(a_s, gather(a_full))
            mid_s = h_s + a_s
            torch.testing.assert_close(mid_s + blk.ffn_residual(mid_s), gather(h_next))
            h = h_next


def test_batch_invariance_and_state_dict_round_trip() -> None:
    net = _net()
    z, t = _inputs(net)
    with torch.no_grad():
        full = net(z, t)
        for b in range(5):
            torch.testing.assert_close(net(z[b : b + 1], t[b : b + 1]), full[b : b + 1])
        sd = net.state_dict()
        assert "mask" in sd and "rff_freqs" in sd  # fixed buffers travel with the weights
        other = _net(seed=123)
        assert not torch.equal(other(z, t), full)
        other.load_state_dict(sd)
        assert torch.equal(other(z, t), full)


def test_gradients_reach_every_parameter() -> None:
    net = _net().train()
    z, t = _inputs(net)
    net(z, t).square().sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_block_rejects_bad_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Block(30, 4, 64)
