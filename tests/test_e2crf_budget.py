"""The static-shape budget step in the sampler: batch invariance, the warn refresh, float64, overflow,
no host syncs inside a step, and the compiled step (no graph breaks, no recompiles over 1,000 steps,
same samples as eager)."""
from __future__ import annotations

import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pyfdc import ops
from pyfdc.e2crf import E2CRFConfig, E2CRFSampler
from pyfdc.e2crf_budget import BudgetForward
from pyfdc.model import DiffusionModel

from tinymodels import T, one_thread, tiny_model as _tiny_model  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return _tiny_model()


BUDGET = dict(K=1, tau0=0.5, R=5, num_probes=2, budget=0.4)


def _run(model, cfg, n=4, batch=4, seed=0, offset=0, steps=16):
    return E2CRFSampler(model, cfg).sample_tokens(n, steps=steps, batch_size=batch, seed=seed, progress=False,
                                                  sample_offset=offset)


@pytest.fixture(scope="module")
def gmodel() -> DiffusionModel:
    """The tiny model with token moments (from its own prior draws: any valid moments do for exactness)."""
    from pyfdc.token_moments import TokenMoments

    m = _tiny_model()
    z = torch.randn(64, T, 2, generator=torch.Generator().manual_seed(9)) * m.mask() * 1.5 + 0.3 * m.mask()
    m.token_moments = TokenMoments.fit(z)
    return m


@pytest.mark.parametrize("tau_warn,reuse,output", [(0.5, "frozen", "features"), (1e-3, "frozen", "features"),
                                                   (1e-3, "linear", "features"), (1e-3, "frozen", "gaussian")],
                         ids=["rare_warn", "frequent_warn", "frequent_warn_linear", "frequent_warn_gaussian"])
def test_budget_batch_invariance(model, gmodel, tau_warn, reuse, output):
    """A sample's trajectory does not depend on its batch, also when other samples warn-refresh."""
    model = gmodel if output == "gaussian" else model
    cfg = E2CRFConfig(**BUDGET, tau_warn=tau_warn, tau_safe=min(0.1, tau_warn), reuse=reuse, cached_output=output)
    xb, sb = _run(model, cfg, seed=3)
    k = math.ceil(0.4 * T)
    assert min(sb.recomputed_fraction) >= k / T - 1e-12 and sb.mean_recomputed_fraction < 1.0
    if tau_warn < 0.01:
        assert sb.warn_steps, "the frequent-warn config must exercise the masked step"
    for j in range(4):
        xj, _ = _run(model, cfg, n=1, batch=1, seed=3, offset=j)
        torch.testing.assert_close(xb[j:j + 1], xj, rtol=1e-4, atol=1e-4)  # matmul blocking only


def test_budget_fraction_and_overflow(model):
    """Cached steps recompute exactly k tokens; a budget of everything never overflows."""
    _, small = _run(model, E2CRFConfig(**{**BUDGET, "budget": 0.2}, tau_warn=math.inf), steps=12)
    k = max(1 + 1 + 2, math.ceil(0.2 * T))
    cached_steps = [f for i, f in enumerate(small.recomputed_fraction) if i % 5]
    assert all(abs(f - k / T) < 1e-12 for f in cached_steps)
    assert small.budget_overflow > 0          # untrained trajectories drift: the small budget binds
    _, full = _run(model, E2CRFConfig(**{**BUDGET, "budget": 1.0}, tau_warn=math.inf), steps=12)
    assert full.budget_overflow == 0 and full.mean_recomputed_fraction == 1.0


@pytest.mark.parametrize("output", ["features", "gaussian"])
def test_full_budget_equals_uncached(gmodel, output):
    """budget = 1 with no probes: every token is recomputed every step, so samples equal uncached EM."""
    cfg = E2CRFConfig(K=1, tau0=0.5, R=5, num_probes=0, budget=1.0, tau_warn=math.inf, cached_output=output)
    x, _ = _run(gmodel, cfg)
    ref, _ = _run(gmodel, E2CRFConfig(mode="uncached"))
    torch.testing.assert_close(x, ref, rtol=1e-4, atol=1e-5)


def test_gaussian_output_changes_samples_and_needs_moments(model, gmodel):
    """With a partial budget the gaussian output answers cached tokens differently from the features
    output (so the option is live), and a model without token moments gets a one-line error."""
    cfg = E2CRFConfig(**{**BUDGET, "budget": 0.3}, tau_warn=math.inf)
    xf, _ = _run(gmodel, cfg)
    xg, _ = _run(gmodel, E2CRFConfig(**{**BUDGET, "budget": 0.3}, tau_warn=math.inf, cached_output="gaussian"))
    assert torch.isfinite(xg).all() and (xg - xf).abs().max() > 1e-3
    with pytest.raises(ValueError, match="needs the training tokens' moments, and this model has none"):
        _run(model, E2CRFConfig(**BUDGET, cached_output="gaussian"))


def test_budget_float64():
    m64 = _tiny_model(dtype=torch.float64)
    for cfg in (E2CRFConfig(**BUDGET), E2CRFConfig(K=1, tau0=0.5, R=5)):
        x, _ = E2CRFSampler(m64, cfg).sample_tokens(2, steps=8, batch_size=2, progress=False)
        assert x.dtype == torch.float64 and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="supports float32 and float64 models, got torch.bfloat16"):
        E2CRFSampler(_tiny_model(dtype=torch.bfloat16), E2CRFConfig(**BUDGET)).sample_tokens(1, steps=2, progress=False)


@pytest.mark.parametrize("bad,match", [
    (dict(budget=0.0), r"budget must lie in \(0.0, 1.0\]"),
    (dict(budget=1.5), r"budget must lie in"),
    (dict(budget=0.3, mode="naive_kv"), "budget works with modes"),
    (dict(compile=True), "compile needs a budget"),
    (dict(budget=0.3, reuse="quadratic"), "reuse must be 'frozen' or 'linear'"),
    (dict(reuse="linear"), "reuse='linear' needs a budget"),
    (dict(cached_output="gaussian"), "cached_output='gaussian' needs a budget"),
    (dict(budget=0.3, cached_output="mean"), "cached_output must be 'features', 'x0' or 'gaussian'"),
])
def test_budget_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        E2CRFConfig(**bad)


def _forward(model, B=4, compile=False):
    net = model.net
    return BudgetForward(net, B, T, 2, k=7, K=1, num_probes=2, tau0=0.5, eps=1e-6, compile=compile)


def _args(B=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, 2, generator=g)
    t = torch.full((B,), 0.5)
    probes = torch.stack([torch.randperm(T - 2, generator=g)[:2] + 2 for _ in range(B)])
    return z, t, probes, torch.full((B,), 0.05)


SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::unique",
            "aten::is_nonzero")


@pytest.mark.skipif(ops.backend("cpu") == "reference", reason="the twins validate probe rows on the host")
def test_no_host_sync_in_a_step(model):
    """No op that reads a value back to the host (or makes a shape from data) runs inside a step."""
    fwd = _forward(model)
    z, t, probes, alpha = _args()
    force = torch.tensor([False, True, False, False])
    fwd.refresh(z, t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fwd.refresh(z, t)
        fwd.sparse(z + 0.1, t * 0.9, probes, alpha)
        fwd.masked(z + 0.2, t * 0.8, probes, alpha, force)
    names = {e.key for e in prof.key_averages()}
    assert "pyfdc::select_budget" in names and "pyfdc::kv_scatter" in names   # the profiler sees ops
    assert not names & set(SYNC_OPS), names & set(SYNC_OPS)


def test_old_step_does_sync(model):
    """The check above can fail: the variable-set step reads counts back to the host."""
    from pyfdc.e2crf_step import CachedForward

    fwd = CachedForward(model.net, 2, T, 2)
    z, t = torch.randn(2, T, 2), torch.full((2,), 0.5)
    idx = torch.full((2, T), -1)
    idx[:, :3] = torch.arange(3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fwd(z, t, idx, torch.tensor([3, 3]), None, torch.zeros(2), 1e-6)
    assert {e.key for e in prof.key_averages()} & set(SYNC_OPS)


@pytest.mark.skipif(ops.backend("cpu") == "reference", reason="compiled step needs the compiled ops")
def test_compiled_step_no_breaks_no_recompiles(model):
    """1,000 EM steps through the compiled refresh/sparse/masked steps: each function is traced once
    with fullgraph=True (a graph break would raise), nothing recompiles, samples equal eager ones."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = E2CRFConfig(K=1, tau0=0.5, R=50, num_probes=2, budget=0.4, tau_warn=0.05, tau_safe=0.01)
    eager, se = _run(model, cfg, n=2, batch=2, steps=1000)
    with torch._dynamo.config.patch(error_on_recompile=True):
        comp, sc = _run(model, E2CRFConfig(**{**cfg.__dict__, "compile": True}), n=2, batch=2, steps=1000)
        again, _ = _run(model, E2CRFConfig(**{**cfg.__dict__, "compile": True}), n=2, batch=2, seed=1, steps=50)
    assert se.warn_steps and sc.warn_steps, "all three step functions must run"
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 3, dict(counters["stats"])
    # inductor fuses and reorders float32 arithmetic; over 1,000 chaotic steps of an untrained
    # network that stays well below the sample scale (~1)
    torch.testing.assert_close(comp, eager, rtol=0, atol=5e-3)
    assert se.recomputed_fraction == sc.recomputed_fraction


@pytest.mark.parametrize("solver", ["ddim", "dpm2m"])
def test_cache_feeds_deterministic_solvers(model, solver):
    """With every token recomputed the cached loop equals the uncached deterministic solver; with a
    real budget it differs (the cache is in the loop) but stays finite."""
    from pyfdc.sampler import Sampler

    ref = Sampler(model, solver).sample_tokens(3, steps=10, batch_size=3, progress=False)
    full, _ = _run(model, E2CRFConfig(K=1, num_probes=0, budget=1.0, tau_warn=math.inf, solver=solver), n=3,
                   batch=3, steps=10)
    torch.testing.assert_close(full, ref, rtol=1e-4, atol=1e-5)
    part, st = _run(model, E2CRFConfig(**BUDGET, solver=solver), n=3, batch=3, steps=10)
    assert st.mean_recomputed_fraction < 1 and torch.isfinite(part).all() and not torch.allclose(part, ref)
    with pytest.raises(ValueError, match="solver must be one of"):
        E2CRFConfig(solver="rk4")


def test_presets():
    assert E2CRFConfig.paper() == E2CRFConfig()
    b = E2CRFConfig.budgeted(0.35, K=4)
    assert (b.budget, b.mode, b.K) == (0.35, "no_energy", 4)


@pytest.mark.parametrize("budget", [0.5, None], ids=["budget", "variable"])
@pytest.mark.parametrize("domain,K,expect", [("freq", None, T // 10), ("time", None, 0), ("time", 3, 3),
                                             ("freq", 0, 0)])
def test_band_follows_token_kind(model, monkeypatch, budget, domain, K, expect):
    """K = None is ⌊N'/10⌋ lowest frequencies for spectral tokens and no band for time-domain ones
    (a prefix of time steps is not a band); an explicit K is kept. Read off what the policy uses."""
    from pyfdc import e2crf, e2crf_budget_policy

    seen = []
    cls = e2crf_budget_policy.BudgetEpsFn if budget else e2crf.CachedEpsFn
    init = cls.__init__

    def spy(self, *a, **kw):
        init(self, *a, **kw)
        seen.append(self.K)

    monkeypatch.setattr(cls, "__init__", spy)
    m = model if domain == "freq" else _tiny_model(kind="time")
    cfg = E2CRFConfig(K=K, tau0=0.5, R=5, num_probes=1, budget=budget)
    E2CRFSampler(m, cfg).sample_tokens(2, steps=4, batch_size=2, seed=0, progress=False)
    assert seen == [expect]
    assert E2CRFConfig(K=K).band(94, domain) == (expect if K is not None else {"freq": 9, "time": 0}[domain])
