"""The E2-CRF policy around the cached step (:mod:`pyfdc.e2crf.step`): refreshes, probes, error feedback
and the event intensity, with every per-step decision either fixed by the step index or read one step
late from the device; and the binding of a config to a model that a :class:`~pyfdc.sampling.solvers.Sampler` asks for.

Per sample ``b`` at step ``i`` (Algorithm 1 of the paper, with a fixed recompute budget):

* step 0, every ``R`` steps and the ``tail`` (the run's last ``ceil(tail · steps)`` steps):
  :meth:`CachedStep.refresh` (every token, every sample);
* otherwise the cached step: ``k`` tokens — band ``0..K``, ``P`` probes drawn uniformly among the
  tokens outside the band (per-sample seeded stream), then the highest drift scores;
* ``α_b = min(α_max, r_b / 2)`` when ``r_b ≥ τ_safe`` else 0 (Eq. 14), ``r_b`` from the features of
  the two previous steps and the previous probe error (Eq. 12);
* **warn refresh, one step late**: ``r_b > τ_warn`` computed at the end of step ``i − 1`` refreshes
  sample ``b`` at step ``i + 1`` (the paper: at step ``i``), through :meth:`CachedStep.masked`,
  unless a periodic refresh came first. The host reads "did any sample warn at the end of step
  ``i − 1``" while step ``i`` runs, so it never waits for the step it has just queued;
* the model's time-domain head runs on every refresh and on the cached steps ``head_every`` or more steps
  after it last ran; the cached steps between add its kept correction (:meth:`CachedStep.sparse`).
"""
from __future__ import annotations

import dataclasses
import math
import weakref
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pyfdc.e2crf import config as _config
from pyfdc.e2crf.calibrate import calibrated_config
from pyfdc.e2crf.intensity import EventIntensity
from pyfdc.e2crf.layers import index_mask
from pyfdc.e2crf.step import CachedStep, budget_size

if TYPE_CHECKING:
    from pyfdc.e2crf.config import E2CRFConfig
    from pyfdc.sampling.stats import StepRecorder

# One CachedStep per (network, batch shape, budget): compiled steps are built once and reused by
# every batch and every sampler of that network (reset() between batches), not re-traced.
_FORWARDS: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, CachedStep]]" = weakref.WeakKeyDictionary()


def shared_forward(net: nn.Module, key: tuple, **kwargs: Any) -> CachedStep:
    """The :class:`CachedStep` of ``net`` for ``key`` (built on first use), reset."""
    per_net = _FORWARDS.setdefault(net, {})
    fwd = per_net.get(key)
    if fwd is None:
        fwd = per_net[key] = CachedStep(net, **kwargs)
    fwd.reset()
    return fwd


class E2CRFPolicy:
    """Stateful ``EpsFn`` for one batch: ``eps_fn(z (B, N', C), t (B,), i) -> eps_hat (B, N', C)``.

    ``config`` must be resolved for the model (:meth:`E2CRFConfig.for_model`: a budget, a concrete
    cached output and K)."""

    def __init__(self, net: nn.Module, config: "E2CRFConfig", sample_ids: Tensor, seed: int, num_tokens: int,
                 token_dim: int, acc: "StepRecorder | None", dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", sde: Any = None,
                 moments: tuple[Tensor, Tensor] | None = None, compile: bool = False,
                 full_from: int | None = None) -> None:
        from pyfdc.sampling.solvers import NoiseStream

        if config.budget is None or config.cached_output == "auto" or config.K is None:
            raise ValueError("E2CRFPolicy needs a config resolved for the model (budget, cached output and K set)")
        self.net, self.cfg, self.acc = net, config, acc
        self.full_from = math.inf if full_from is None else full_from  # steps i >= this recompute every token
        self.B, self.T = int(sample_ids.numel()), num_tokens
        self.K = min(config.K, num_tokens - 1)
        self.P = min(config.probes, num_tokens - 1 - self.K)
        self.k = budget_size(config.budget, num_tokens, self.K, self.P)
        self.use_warn = config.warn_refresh
        energy = config.ranking == "energy"
        dev = torch.device(device)
        key = (self.B, num_tokens, token_dim, self.k, self.K, self.P, config.tau0, config.eps, energy,
               config.eta, config.tau_safe, config.alpha_max, config.tau_warn, dtype, str(dev), bool(compile),
               config.cached_output, id(sde), config.head_period > 1,   # the period itself is the policy's
               None if moments is None else hash(b"".join(m.detach().cpu().numpy().tobytes() for m in moments)))
        self.fwd = shared_forward(net, key, batch=self.B, num_tokens=num_tokens, token_dim=token_dim, k=self.k,
                                  K=self.K, num_probes=self.P, tau0=config.tau0, eps=config.eps,
                                  energy_weighted=energy, eta=config.eta, dtype=dtype, device=dev,
                                  compile=bool(compile), cached_output=config.cached_output, sde=sde,
                                  moments=moments, step_rule=(config.tau_safe, config.alpha_max, config.tau_warn),
                                  head_every=config.head_period)
        B, T = self.B, num_tokens
        self.intensity = EventIntensity(B, T, self.fwd.d, config.eta, dtype=dtype, device=dev)
        # ring: end of steps i-1, i (two tensors, so the compiled step gets either without a new graph)
        self.warn_flags = [torch.zeros(B, dtype=torch.bool, device=dev) for _ in range(2)]
        pin = dev.type == "cuda"
        self.warn_any = torch.zeros(2, dtype=torch.bool, pin_memory=pin)      # host copies of .any()
        self._mark = torch.zeros(B, T + 1, dtype=torch.bool, device=dev)
        self.steps_seen = 0
        self.last_full = 0
        self.last_head = 0   # the last step that ran the time head (every step but the reusing cached ones)
        self._fused: list[tuple[int, Tensor]] = []   # (step, its statistics) of the steps policy_sparse ran
        self.probe_stream = None
        if self.P:
            ones = torch.ones(T, 1, dtype=dtype, device=dev)
            self.probe_stream = NoiseStream(seed + config.probe_seed_offset, sample_ids, (T, 1), ones)

    @property
    def cache_bytes(self) -> int:
        return self.fwd.cache_bytes + self.intensity.nbytes

    def _draw(self) -> Tensor | None:
        """The probe stream's next ``(B, N', 1)`` draw (``None`` without probes); probes are its ``P``
        smallest tokens outside the band (:meth:`CachedStep.probe_rows`): uniform per sample."""
        return self.probe_stream() if self.P else None

    def _probes(self) -> Tensor:
        """``(B, P)`` distinct tokens outside the band, uniform per sample."""
        return self.fwd.probe_rows(self._draw())

    def __call__(self, z: Tensor, t: Tensor, i: int) -> Tensor:
        cfg, fwd = self.cfg, self.fwd
        periodic = self.steps_seen == 0 or i % cfg.R == 0 or i >= self.full_from
        force = None
        fused = not periodic and not self._warn_step(i)
        head = True   # whether this step runs the time head (only a fused cached step may reuse its correction)
        r_used = self.intensity.current().clone() if self.acc is not None and not fused else None
        if periodic:
            eps_hat = fwd.refresh(z, t)
            err = None
            self.last_full = i
        elif fused:   # the common step: probes, step size, intensity, flags and statistics in the cached step
            head = not fwd.reuse_head or i - self.last_head >= cfg.head_period
            eps_hat, _, vals = fwd.policy_sparse(z, t, self._draw(), *self.intensity.for_fused_step(),
                                                 self.warn_flags[i % 2], head)
            if self.acc is not None:
                self._fused.append((i, vals))
        else:
            force = self.warn_flags[(i - 2) % 2].clone()
            alpha = self.intensity.step_size(cfg.tau_safe, cfg.alpha_max)
            eps_hat, err = fwd.masked(z, t, self._probes(), alpha, force)
            if not self.P:
                err = None
        if head:
            self.last_head = i
        flags = self.warn_flags[i % 2]
        if not fused:
            torch.gt(self.intensity.update(fwd.feat, err), cfg.tau_warn, out=flags)
            if self.acc is not None:
                self._record(i, periodic, force, err, r_used)
        self.warn_any[i % 2].copy_(flags.any(), non_blocking=True)
        self.steps_seen += 1
        return eps_hat

    def _warn_step(self, i: int) -> bool:
        """Whether step ``i`` (not a periodic one) is a warn refresh: some sample's ``r`` passed ``tau_warn`` at
        the end of step ``i − 2`` (read one step late, so the host never waits for the step it just queued)."""
        return (self.use_warn and self.steps_seen >= 3 and i - 2 >= self.last_full
                and bool(self.warn_any[(i - 2) % 2]))

    def flush(self, acc: "StepRecorder") -> None:
        """Add the statistics of the steps that ran inside the cached step (:meth:`CachedStep.policy_sparse`)
        to ``acc``; the other steps recorded theirs as they ran."""
        if self._fused:
            dev = acc.count.device
            ids = torch.tensor([i for i, _ in self._fused], device=dev)
            vals = torch.stack([v for _, v in self._fused]).to(device=dev, dtype=acc.count.dtype)
            acc.r.index_add_(0, ids, vals[:, 0])
            acc.count.index_add_(0, ids, vals[:, 2])
            if self.P:
                acc.err.index_add_(0, ids, vals[:, 1])
                acc.probe[ids] = True
            self._fused.clear()
        acc.cached += self.fwd.hits.to(acc.cached)
        self.fwd.hits.zero_()

    def _record(self, i: int, periodic: bool, force: Tensor | None, err: Tensor | None, r_used: Tensor) -> None:
        acc, B, T = self.acc, self.B, self.T
        if periodic:
            recomputed = torch.ones(B, T, dtype=torch.bool, device=r_used.device)
        else:
            recomputed = index_mask(self.fwd.idx, T, self._mark)
            if force is not None:
                recomputed = recomputed | force[:, None]
                acc.warn[i] |= force.any()
        acc.count[i] += recomputed.sum()
        acc.cached += (~recomputed).sum(dim=0)
        acc.r[i] += r_used.sum()
        acc.refresh[i] |= periodic or force is not None
        if err is not None:
            acc.err[i] += err.sum()
            acc.probe[i] |= True


class E2CRFBinding:
    """An :class:`E2CRFConfig` bound to one model for one sampling run (what :class:`~pyfdc.sampling.sampler.Sampler`
    gets from :meth:`E2CRFConfig.bind`): ``batch(ids, seed, recorder)`` gives each batch its policy."""

    name = "e2crf"

    def __init__(self, model: Any, config: "E2CRFConfig", compile: bool = False, steps: int | None = None) -> None:
        tr = model.transform
        config.check_tokens(tr.num_tokens, tr.kind)
        self.config = dataclasses.replace(config, K=config.band(tr.num_tokens, tr.kind))
        self.model, self.compile = model, bool(compile)
        # the tail: steps from here on recompute every token (None: no tail, or the run's length is not known)
        tail = 0 if steps is None else self.config.tail_steps(steps)
        self.full_from = None if tail == 0 else steps - tail
        net = model.net
        p = next(net.parameters())
        self.dtype, self.device = p.dtype, p.device
        self.moments = None
        if self.config.cached_output == "gaussian":
            tm = getattr(model, "token_moments", None)
            if tm is None:
                raise ValueError("cached_output='gaussian' needs the training tokens' moments, and this model has "
                                 "none (older checkpoints lack them): retrain, or set model.token_moments = "
                                 "pyfdc.core.token_moments.TokenMoments.fit(model.data_to_tokens(fit_split))")
            if tm.shape != (tr.num_tokens, tr.token_dim):
                raise ValueError(f"the model's token moments are {tm.shape}, its tokens are "
                                 f"({tr.num_tokens}, {tr.token_dim})")
            self.moments = tm.tensors(self.dtype, self.device)

    def batch(self, sample_ids: Tensor, seed: int, recorder: "StepRecorder | None") -> E2CRFPolicy:
        """A fresh policy (state reset) for the samples ``sample_ids (B,)``."""
        tr = self.model.transform
        return E2CRFPolicy(self.model.net, self.config, sample_ids, seed, tr.num_tokens, tr.token_dim, recorder,
                           dtype=self.dtype, device=self.device, sde=self.model.sde, moments=self.moments,
                           compile=self.compile, full_from=self.full_from)

    def finish_batch(self, policy: E2CRFPolicy, recorder: "StepRecorder") -> None:
        policy.flush(recorder)
        recorder.overflow += policy.fwd.overflow.sum()


def bind(config: "E2CRFConfig", model: Any, *, steps: int, method: str = "em", compile: bool = False,
         progress: bool = False) -> E2CRFBinding | None:
    """``config`` for ``model``: a budget of ``None`` is resolved by the model's calibration for ``method`` at
    ``steps`` (:func:`pyfdc.e2crf.calibrate.calibrated_config`); ``None`` back means sample uncached."""
    if config.budget is None:
        config = calibrated_config(model, steps, method, base=config, progress=progress)
        if config is None:
            return None
    return E2CRFBinding(model, config.for_model(model), compile, steps=steps)


_config._ENGINE = bind
