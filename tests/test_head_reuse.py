"""The time head's correction reused between its runs on cached steps (``E2CRFConfig.head_every``).

A cached step that skips the head must add the correction of the head's *last* run: checked against a twin
network without a head (the same transformer and cached output, so the difference of two runs is exactly the
head's correction). A step that served a correction from an earlier run (stale), or none, fails it. The
policy's schedule is checked against an EM loop that reuses the head by the same rule, written here."""
from __future__ import annotations

import copy

import pytest
import torch

from pyfdc.core.token_moments import TokenMoments
from pyfdc.e2crf import E2CRFConfig
from pyfdc.e2crf.step import CachedStep
from pyfdc.sampling.sampler import Sampler
from pyfdc.sampling.solvers import NoiseStream, euler_maruyama
from tinymodels import head_model, one_thread, tiny_model  # noqa: F401 (autouse fixture)

B, P = 3, 2


def _model(cached_output: str):
    model = head_model()
    if cached_output == "gaussian":
        gen = torch.Generator().manual_seed(1)
        model.token_moments = TokenMoments.fit(torch.randn(64, model.num_tokens, model.token_dim, generator=gen)
                                               * model.mask())
    return model


def _step(model, net, cached_output: str, head_every: int, compile: bool = False) -> CachedStep:
    moments = model.token_moments.tensors(torch.float32, "cpu") if cached_output == "gaussian" else None
    return CachedStep(net, B, model.num_tokens, model.token_dim, k=10, K=2, num_probes=P, tau0=0.5, eps=1e-6,
                      cached_output=cached_output, sde=model.sde, moments=moments, head_every=head_every,
                      compile=compile)


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("cached_output,via", [("features", "sparse"), ("gaussian", "sparse"), ("features", "masked")])
def test_a_step_without_the_head_adds_its_last_correction(cached_output: str, via: str, compile: bool) -> None:
    """The head's last run is a budget step (``via`` sparse) or a warn refresh (masked) after the refresh."""
    if compile and (cached_output, via) != ("features", "sparse"):
        pytest.skip("one compiled case: the flag's two graphs do not depend on the cached output")
    model = _model(cached_output)
    net = model.net
    bare = copy.deepcopy(net)
    bare.time_head = None                      # the same network without its head
    every = _step(model, net, cached_output, 1, compile)
    reuse = _step(model, net, cached_output, 4, compile)
    plain = _step(model, bare, cached_output, 1, compile)
    gen = torch.Generator().manual_seed(3)
    zs = [torch.randn(B, model.num_tokens, model.token_dim, generator=gen) * model.mask() for _ in range(4)]
    ts = [torch.full((B,), v) for v in (0.9, 0.6, 0.4, 0.2)]
    probes, alpha = torch.tensor([[5, 9], [3, 11], [7, 4]]), torch.full((B,), 0.05)
    outs = {"every": [every.refresh(zs[0], ts[0])], "reuse": [reuse.refresh(zs[0], ts[0])],
            "plain": [plain.refresh(zs[0], ts[0])]}
    force = torch.tensor([True, False, False])
    for i in (1, 2, 3):
        if i == 1 and via == "masked":
            for name, fwd in (("every", every), ("plain", plain), ("reuse", reuse)):
                outs[name].append(fwd.masked(zs[i], ts[i], probes, alpha, force)[0])
            continue
        outs["every"].append(every.sparse(zs[i], ts[i], probes, alpha)[0])
        outs["plain"].append(plain.sparse(zs[i], ts[i], probes, alpha)[0])
        outs["reuse"].append(reuse.sparse(zs[i], ts[i], probes, alpha, head=i == 1)[0])
    e, r, p = outs["every"], outs["reuse"], outs["plain"]
    assert torch.equal(r[0], e[0]) and torch.equal(r[1], e[1])     # the head ran: the same ops, bitwise
    last = e[1] - p[1]                                             # the correction of the head's last run
    for i in (2, 3):
        torch.testing.assert_close(r[i], p[i] + last, rtol=0, atol=1e-6)   # float32 rounding of (a + b) - a
        stale = e[0] - p[0]                                        # the refresh's correction, one run older
        assert (p[i] + stale - r[i]).abs().max() > 1e-3
        assert (e[i] - r[i]).abs().max() > 1e-3                    # skipping the head changes the step


def test_head_false_is_refused_where_nothing_is_kept() -> None:
    model = _model("features")
    fwd = _step(model, model.net, "features", 1)
    z = torch.zeros(B, model.num_tokens, model.token_dim)
    fwd.refresh(z, torch.full((B,), 0.5))
    with pytest.raises(ValueError, match="head_every > 1"):
        fwd.sparse(z, torch.full((B,), 0.5), torch.tensor([[5, 9]] * B), torch.zeros(B), head=False)


def _em_with_reused_head(model, every: int, R: int, steps: int, n: int, seed: int) -> torch.Tensor:
    """Uncached EM whose head runs on steps 0, every R-th and ``every`` steps after its last run (the policy's
    rule with budget 1 and no warn refresh), adding its last correction in between."""
    net, kept = model.net, {}

    def eps_fn(z, t, i):
        tf = net.time_features(t)
        h = net.embed(z, t, tf)
        for blk in net.blocks:
            h = blk(h)
        eps = net.head(h)
        if i % R == 0 or i - kept["at"] >= every:
            kept["at"], kept["delta"] = i, net.time_head(eps, z, tf, net.mask) - eps
        return eps + kept["delta"]

    mask = model.mask()
    stream = NoiseStream(seed, torch.arange(n), (model.num_tokens, model.token_dim), mask)
    with torch.no_grad():
        z = euler_maruyama(eps_fn, model.sde, stream(), mask, steps, stream)
    return model.decode_samples(z)


@pytest.mark.parametrize("every", [2, 3])
def test_the_policy_runs_the_head_on_its_schedule(every: int) -> None:
    """Budget 1 recomputes every token, so the cached sampler is uncached EM but for the head's schedule."""
    model = head_model()
    cfg = E2CRFConfig(budget=1.0, cached_output="features", R=5, head_every=every, warn_refresh=False)
    got = Sampler(model, "em", cache=cfg).sample(3, steps=14, seed=4, progress=False)
    want = _em_with_reused_head(model, every, 5, 14, 3, 4)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)   # float32 reassociation of the cached step
    off_by_one = _em_with_reused_head(model, every + 1, 5, 14, 3, 4)
    assert (got - off_by_one).abs().max() > 1e-4
    every_step = Sampler(model, "em").sample(3, steps=14, seed=4, progress=False)
    assert (got - every_step).abs().max() > 1e-4


def test_head_every_is_an_option_like_the_others() -> None:
    cfg = E2CRFConfig.from_options({"head_every": "4", "budget": "0.3"})
    assert cfg.head_every == 4 and cfg.head_period == 4 and "every 4 steps" in cfg.describe()
    assert E2CRFConfig.from_dict(cfg.to_dict()) == cfg
    assert E2CRFConfig().head_period == 1 and E2CRFConfig.from_options({"head_every": "auto"}).head_every is None
    assert E2CRFConfig(head_every=4).for_model(tiny_model()).head_every is None   # no head: nothing to reuse
    assert E2CRFConfig(head_every=4).for_model(head_model()).head_every == 4
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="head_every"):
            E2CRFConfig(head_every=bad)
