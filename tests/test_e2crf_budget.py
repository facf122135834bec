"""The E2-CRF engine (the static-shape cached step) in the one Sampler: batch invariance, the warn refresh,
float64, overflow, no host syncs inside a step, the compiled step (no graph breaks, no recompiles over
1,000 steps, same samples as eager), the deterministic solvers, and the config's one parser."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from pyfdc import ops
from pyfdc.e2crf import E2CRFConfig
from pyfdc.e2crf.step import CachedStep
from pyfdc.core.model import DiffusionModel
from pyfdc.sampling.sampler import Sampler

from tinymodels import T, one_thread, tiny_model as _tiny_model  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return _tiny_model()


BUDGET = dict(K=1, tau0=0.5, R=5, num_probes=2, budget=0.4, ranking="energy", cached_output="features")


def _run(model, cfg, n=4, batch=4, seed=0, offset=0, steps=16, solver="em", compile=False):
    s = Sampler(model, solver, cache=cfg, compile=compile)
    z = s.sample_tokens(n, steps=steps, batch_size=batch, seed=seed, progress=False, sample_offset=offset)
    return z, s.stats


@pytest.fixture(scope="module")
def gmodel() -> DiffusionModel:
    """The tiny model with token moments (from its own prior draws: any valid moments do for exactness)."""
    from pyfdc.core.token_moments import TokenMoments

    m = _tiny_model()
    z = torch.randn(64, T, 2, generator=torch.Generator().manual_seed(9)) * m.mask() * 1.5 + 0.3 * m.mask()
    m.token_moments = TokenMoments.fit(z)
    return m


@pytest.mark.parametrize("tau_warn,output", [(0.5, "features"), (1e-3, "features"), (1e-3, "gaussian")],
                         ids=["rare_warn", "frequent_warn", "frequent_warn_gaussian"])
def test_budget_batch_invariance(model, gmodel, tau_warn, output):
    """A sample's trajectory does not depend on its batch, also when other samples warn-refresh."""
    model = gmodel if output == "gaussian" else model
    cfg = E2CRFConfig(**{**BUDGET, "cached_output": output}, tau_warn=tau_warn, tau_safe=min(0.1, tau_warn))
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
    ref, stats = _run(gmodel, None)
    assert stats.cache == "none" and stats.mean_recomputed_fraction == 1.0
    torch.testing.assert_close(x, ref, rtol=1e-4, atol=1e-5)


def test_gaussian_output_changes_samples_and_needs_moments(model, gmodel):
    """With a partial budget the gaussian output answers cached tokens differently from the features
    output (so the option is live), and a model without token moments gets a one-line error."""
    cfg = E2CRFConfig(**{**BUDGET, "budget": 0.3}, tau_warn=math.inf)
    xf, _ = _run(gmodel, cfg)
    xg, _ = _run(gmodel, E2CRFConfig(**{**BUDGET, "budget": 0.3, "cached_output": "gaussian"}, tau_warn=math.inf))
    assert torch.isfinite(xg).all() and (xg - xf).abs().max() > 1e-3
    with pytest.raises(ValueError, match="needs the training tokens' moments, and this model has none"):
        _run(model, E2CRFConfig(**{**BUDGET, "cached_output": "gaussian"}))
    # 'auto' is gaussian exactly where the model has token moments and spectral tokens
    assert E2CRFConfig().for_model(gmodel).cached_output == "gaussian"
    assert E2CRFConfig().for_model(model).cached_output == "features"


def test_budget_float64():
    m64 = _tiny_model(dtype=torch.float64)
    for cfg in (E2CRFConfig(**BUDGET), E2CRFConfig(**{**BUDGET, "feedback": False})):
        x, _ = _run(m64, cfg, n=2, batch=2, steps=8)
        assert x.dtype == torch.float64 and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="supports float32 and float64 models, got torch.bfloat16"):
        _run(_tiny_model(dtype=torch.bfloat16), E2CRFConfig(**BUDGET), n=1, steps=2)


def test_tail_recomputes_every_token_on_the_last_steps(gmodel):
    """``tail``: the last ceil(tail·steps) steps recompute every token — so the samples differ from the tailless
    run's, the other steps keep the budget, and a tail that covers all but step 0 equals uncached sampling."""
    cfg = E2CRFConfig(**{**BUDGET, "budget": 0.2, "R": 50, "cached_output": "gaussian"}, tau_warn=math.inf)
    x0, s0 = _run(gmodel, cfg, steps=20)
    xt, st = _run(gmodel, dataclasses.replace(cfg, tail=0.1), steps=20)
    k = max(1 + 1 + 2, math.ceil(0.2 * T)) / T
    assert st.recomputed_fraction[18:] == [1.0, 1.0] and s0.recomputed_fraction[18:] == [k, k]
    assert st.recomputed_fraction[1:18] == s0.recomputed_fraction[1:18] and 18 in st.refresh_steps
    assert torch.isfinite(xt).all()
    assert (xt - x0).abs().max() > 1e-4       # the tail changed the last steps' predictions
    xall, _ = _run(gmodel, dataclasses.replace(cfg, tail=0.95), steps=20)
    ref, _ = _run(gmodel, None, steps=20)
    torch.testing.assert_close(xall, ref, rtol=1e-4, atol=1e-5)  # step 0 refreshes, steps 1..19 are the tail
    assert E2CRFConfig(0.2, tail=0.05).tail_steps(1000) == 50 and E2CRFConfig(0.2, tail=0.05).tail_steps(10) == 1
    assert E2CRFConfig(0.2).tail_steps(1000) == 0 and "last 5% of steps" in E2CRFConfig(0.2, tail=0.05).describe()


@pytest.mark.parametrize("bad,match", [
    (dict(budget=0.0), r"budget must lie in \(0.0, 1.0\]"),
    (dict(budget=1.5), r"budget must lie in"),
    (dict(ranking="plain"), "ranking must be one of"),
    (dict(cached_output="x0"), "cached_output must be one of"),
    (dict(feedback=1), "feedback must be a bool"),
    (dict(K=-1), "K must be an int"), (dict(R=0), "R must be an int"), (dict(tau0=0.0), "tau0"),
    (dict(tau_safe=0.6, tau_warn=0.5), "tau_safe"), (dict(alpha_max=1.5), "alpha_max"),
    (dict(mode="full"), "unexpected keyword"), (dict(tail=1.0), "tail must be < 1"), (dict(tail=-0.1), "tail"),
    (dict(tail=float("nan")), "tail must be finite"),
])
def test_config_errors(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        E2CRFConfig(**bad)


def test_one_parser_for_flags_specs_and_files():
    """Strings (front specs, CLI flags) and dicts (calibration files) go through the same typed parser;
    the first generation's fields map onto the new ones or are refused in one line."""
    cfg = E2CRFConfig.from_options({"budget": "0.35", "ranking": "energy", "feedback": "off", "K": "3"})
    assert cfg == E2CRFConfig(budget=0.35, ranking="energy", feedback=False, K=3)
    assert E2CRFConfig.from_dict(cfg.to_dict()) == cfg
    assert E2CRFConfig.from_options({}) == E2CRFConfig()   # the CLI starts from the preset
    assert E2CRFConfig.from_options({"tail": "0.05"}).tail == 0.05 and E2CRFConfig.from_options({"tail": "auto"}).tail is None
    with pytest.raises(ValueError, match="unknown E2-CRF option 'mode'"):
        E2CRFConfig.from_options({"mode": "full"})
    with pytest.raises(ValueError, match="not a number"):
        E2CRFConfig.from_options({"budget": "half"})
    legacy = {"budget": 0.35, "mode": "no_energy", "tau0": 1.0, "solver": "em", "compile": False,
              "reuse": "frozen", "cached_output": "gaussian", "dense_fraction": 0.85}
    assert E2CRFConfig.from_dict(legacy) == E2CRFConfig(budget=0.35, cached_output="gaussian")
    assert E2CRFConfig.from_dict({**legacy, "mode": "fixed"}) == \
        E2CRFConfig(budget=0.35, ranking="energy", cached_output="gaussian", feedback=False, warn_refresh=False)
    assert E2CRFConfig.from_dict({"mode": "uncached", "budget": None}) is None
    for bad in ({**legacy, "budget": None}, {**legacy, "reuse": "linear"}, {**legacy, "mode": "naive_kv"}):
        with pytest.raises(ValueError, match="no longer offers"):
            E2CRFConfig.from_dict(bad)


def _forward(model, B=4, compile=False):
    net = model.net
    return CachedStep(net, B, T, 2, k=7, K=1, num_probes=2, tau0=0.5, eps=1e-6, compile=compile)


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
    """The check above can fail: the paper's variable-set step (test reference) reads counts back to the host."""
    from paper_step import CachedForward

    fwd = CachedForward(model.net, 2, T, 2)
    z, t = torch.randn(2, T, 2), torch.full((2,), 0.5)
    idx = torch.full((2, T), -1)
    idx[:, :3] = torch.arange(3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fwd(z, t, idx, torch.tensor([3, 3]), None, torch.zeros(2), 1e-6)
    assert {e.key for e in prof.key_averages()} & set(SYNC_OPS)


@pytest.mark.skipif(ops.backend("cpu") == "reference", reason="compiled step needs the compiled ops")
def test_compiled_step_no_breaks_no_recompiles(model):
    """1,000 EM steps through the compiled refresh/policy_sparse/masked steps: each function is traced once
    with fullgraph=True (a graph break would raise), nothing recompiles, samples equal eager ones."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    cfg = E2CRFConfig(**{**BUDGET, "R": 50}, tau_warn=0.05, tau_safe=0.01)
    eager, se = _run(model, cfg, n=2, batch=2, steps=1000)
    with torch._dynamo.config.patch(error_on_recompile=True):
        comp, sc = _run(model, cfg, n=2, batch=2, steps=1000, compile=True)
        again, _ = _run(model, cfg, n=2, batch=2, seed=1, steps=50, compile=True)
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
    from pyfdc.sampling.sampler import Sampler

    ref = Sampler(model, solver).sample_tokens(3, steps=10, batch_size=3, progress=False)
    full, _ = _run(model, E2CRFConfig(K=1, num_probes=0, budget=1.0, tau_warn=math.inf), n=3, batch=3, steps=10,
                   solver=solver)
    torch.testing.assert_close(full, ref, rtol=1e-4, atol=1e-5)
    part, st = _run(model, E2CRFConfig(**BUDGET), n=3, batch=3, steps=10, solver=solver)
    assert st.mean_recomputed_fraction < 1 and torch.isfinite(part).all() and not torch.allclose(part, ref)
    assert st.method == solver and st.cache == "e2crf"


@pytest.mark.parametrize("domain,K,expect", [("freq", None, T // 10), ("time", None, 0), ("time", 3, 3),
                                             ("freq", 0, 0)])
def test_band_follows_token_kind(model, monkeypatch, domain, K, expect):
    """K = None is ⌊N'/10⌋ lowest frequencies for spectral tokens and no band for time-domain ones
    (a prefix of time steps is not a band); an explicit K is kept. Read off what the policy uses."""
    from pyfdc.e2crf import policy

    seen = []
    cls = policy.E2CRFPolicy
    init = cls.__init__

    def spy(self, *a, **kw):
        init(self, *a, **kw)
        seen.append(self.K)

    monkeypatch.setattr(cls, "__init__", spy)
    m = model if domain == "freq" else _tiny_model(kind="time")
    _run(m, E2CRFConfig(K=K, tau0=0.5, R=5, num_probes=1, budget=0.5), n=2, batch=2, steps=4)
    assert seen == [expect]
    assert E2CRFConfig(K=K).band(94, domain) == (expect if K is not None else {"freq": 9, "time": 0}[domain])
