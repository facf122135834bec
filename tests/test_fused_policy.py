"""The policy's common step runs inside the cached step (:meth:`CachedStep.policy_sparse`): the probes, the
Eq. 14 step size, the Eq. 12 event intensity, the warn flags and the step's statistics. Checked against the
same policy with that work done by eager calls around :meth:`CachedStep.sparse` (how it ran before it was
fused, kept here as the reference), on the samples and on every statistic, over two batches (the statistics
of the fused steps are added to the run's at the end of each batch)."""
from __future__ import annotations

import math

import pytest
import torch

import pyfdc.e2crf.policy as policy_mod
from pyfdc.e2crf import E2CRFConfig
from pyfdc.sampling.sampler import Sampler

from tinymodels import T, one_thread, tiny_model  # noqa: F401 (autouse fixture)


class UnfusedPolicy(policy_mod.E2CRFPolicy):
    """The policy with every step's work as separate eager calls and recorded as it runs (the reference)."""

    def __call__(self, z: torch.Tensor, t: torch.Tensor, i: int) -> torch.Tensor:
        cfg, fwd = self.cfg, self.fwd
        periodic = self.steps_seen == 0 or i % cfg.R == 0 or i >= self.full_from
        force, err = None, None
        r_used = self.intensity.current().clone()
        if periodic:
            eps_hat = fwd.refresh(z, t)
            self.last_full = i
        else:
            probes = self._probes()
            alpha = self.intensity.step_size(cfg.tau_safe, cfg.alpha_max)
            if self._warn_step(i):
                force = self.warn_flags[(i - 2) % 2].clone()
                eps_hat, err = fwd.masked(z, t, probes, alpha, force)
            else:
                eps_hat, err = fwd.sparse(z, t, probes, alpha)
            if not self.P:
                err = None
        flags = self.warn_flags[i % 2]
        torch.gt(self.intensity.update(fwd.feat, err), cfg.tau_warn, out=flags)
        self.warn_any[i % 2].copy_(flags.any())
        if self.acc is not None:
            self._record(i, periodic, force, err, r_used)
        self.steps_seen += 1
        return eps_hat


@pytest.fixture(scope="module")
def model():
    return tiny_model()


STATS = ("recomputed_fraction", "event_intensity", "feedback_error", "token_hit_rate", "refresh_steps",
         "warn_steps", "probe_steps", "budget_overflow")


@pytest.mark.parametrize("probes,tau_warn", [(2, 0.5), (2, 1e-3), (0, 1e-3)],
                         ids=["probes", "probes_frequent_warn", "no_probes_frequent_warn"])
def test_fused_step_equals_unfused(model, monkeypatch, probes, tau_warn):
    cfg = E2CRFConfig(K=1, tau0=0.5, R=5, num_probes=probes, budget=0.4, ranking="energy",
                      cached_output="features", tau_warn=tau_warn, tau_safe=min(0.05, tau_warn))

    def run():
        s = Sampler(model, "em", cache=cfg)
        return s.sample_tokens(5, steps=24, batch_size=3, seed=2, progress=False), s.stats

    fused, fs = run()
    monkeypatch.setattr(policy_mod, "E2CRFPolicy", UnfusedPolicy)
    ref, rs = run()
    assert torch.equal(fused, ref)   # the same ops on the same values: bitwise
    if tau_warn < 0.01:
        assert rs.warn_steps, "the frequent-warn config must exercise the masked step"
    if probes:
        assert any(e > 0 for e in rs.feedback_error) and any(r > 0 for r in rs.event_intensity)
    for name in STATS:
        got, want = getattr(fs, name), getattr(rs, name)
        if isinstance(want, list) and want and isinstance(want[0], float):
            torch.testing.assert_close(torch.tensor(got, dtype=torch.float64),
                                       torch.tensor(want, dtype=torch.float64), rtol=1e-6, atol=0, msg=name)
        else:
            assert got == want, name
    assert not math.isclose(min(fs.token_hit_rate), max(fs.token_hit_rate))   # the hit rates vary by token
