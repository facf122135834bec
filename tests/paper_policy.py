"""Test-only reference: the paper's literal E2-CRF (Algorithm 1 with variable recompute sets).

The package runs one engine, the static-shape budget step (:mod:`pyfdc.e2crf`). This is the first
generation that issue 22 retired from the package, kept verbatim as a reference so the paper's algorithm
stays reproducible (its samples are pinned bitwise in ``test_sample_digests.py``) and the compiled
energy-weighted threshold selection (:func:`pyfdc.ops.select_tokens`) keeps a caller.

Policy per sample ``b`` at EM step ``i``:

* **event intensity** (Eq. 12, Δ = 1, no look-ahead) over the final-layer features ``F`` of the two
  previous steps, maxed with the previous step's relative probe error; 0 for the first two steps.
* **force all** tokens on step 0, every ``R`` steps, and when ``r_b > τ_warn`` (Alg. 1 l.16).
* **recompute set** from :func:`pyfdc.ops.select_tokens`: ``{κ ≤ K} ∪ {δ_κ > τ_κ}``,
  ``τ_κ = τ0 / (ε + ‖z_κ‖²)`` (Eq. 13, App. A.6.2).
* **probes**: ``num_probes`` tokens drawn uniformly among those left cached, computed fresh; their
  cached residual is nudged (Eq. 14) with ``α_b = min(α_max, r_b / 2)`` above ``τ_safe``.

Modes: ``full``; ``uncached``; ``fixed`` (band + refresh every R); ``no_feedback``; ``no_energy``
(``τ_κ = τ0``); ``naive_kv`` (a plain KV cache: only the K/V projections of cached tokens are skipped).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pyfdc import ops

from paper_step import CachedForward
from pyfdc.e2crf.config import _check_number
from pyfdc.e2crf.intensity import EventIntensity
from pyfdc.e2crf.layers import index_mask
from pyfdc.sampling.stats import SamplingStats, StepRecorder, rss_bytes

if TYPE_CHECKING:
    from pyfdc.core.model import DiffusionModel

MODES = ("full", "uncached", "fixed", "no_feedback", "no_energy", "naive_kv")


@dataclass(frozen=True)
class PaperConfig:
    """E2-CRF hyper-parameters (paper Sec. 4 defaults).

    K: always-recompute band ``{0..K}`` (Eq. 13, so token 0 is always in); ``None`` = ⌊N'/10⌋ for
    spectral tokens (the lowest frequencies) and 0 for time-domain tokens, where a prefix of time
    steps is no band at all.
    tau0, eps: drift threshold ``τ_κ = τ0 / (eps + ‖z_κ‖²)`` (``tau0 = inf`` disables the rule).
    R: full refresh every R steps. tau_safe / tau_warn: event-intensity zones (probe correction
    on above tau_safe, full refresh above tau_warn). alpha_max: cap of α = min(alpha_max, r/2).
    num_probes: random probe tokens per sample and cached step. eta: Eq. 12 stabiliser.
    mode: one of ``MODES``. probe_seed_offset: offsets the probe stream's seed from the noise seed.
    dense_fraction: when a step's selected rows (probes included) cover at least this fraction of
    the batch's B·N' tokens, the cached step runs every row densely and masks the writes (same
    result, no gather/scatter overhead); 1.0 = only for full refreshes. Speed knob, not a policy.
    """

    K: int | None = None
    tau0: float = 0.01
    eps: float = 1e-6
    R: int = 50
    tau_safe: float = 0.1
    tau_warn: float = 0.5
    alpha_max: float = 0.1
    num_probes: int = 2
    eta: float = 1e-6
    mode: str = "full"
    probe_seed_offset: int = 1_000_003
    dense_fraction: float = 0.85

    def __post_init__(self) -> None:
        if self.K is not None and (isinstance(self.K, bool) or not isinstance(self.K, int) or self.K < 0):
            raise ValueError(f"PaperConfig.K must be None or an int >= 0, got {self.K!r}")
        _check_number("tau0", self.tau0, low=0.0, allow_inf=True)
        _check_number("eps", self.eps, low=0.0, low_open=True)
        if isinstance(self.R, bool) or not isinstance(self.R, int) or self.R < 1:
            raise ValueError(f"PaperConfig.R must be an int >= 1, got {self.R!r}")
        _check_number("tau_safe", self.tau_safe, low=0.0, allow_inf=True)
        _check_number("tau_warn", self.tau_warn, low=0.0, low_open=True, allow_inf=True)
        if self.tau_safe > self.tau_warn:
            raise ValueError(f"PaperConfig.tau_safe ({self.tau_safe}) must be <= tau_warn ({self.tau_warn})")
        _check_number("alpha_max", self.alpha_max, low=0.0, high=1.0)
        if isinstance(self.num_probes, bool) or not isinstance(self.num_probes, int) or self.num_probes < 0:
            raise ValueError(f"PaperConfig.num_probes must be an int >= 0, got {self.num_probes!r}")
        _check_number("eta", self.eta, low=0.0, low_open=True)
        if self.mode not in MODES:
            raise ValueError(f"PaperConfig.mode must be one of {MODES}, got {self.mode!r}")
        _check_number("dense_fraction", self.dense_fraction, low=0.0, high=1.0)
        if isinstance(self.probe_seed_offset, bool) or not isinstance(self.probe_seed_offset, int):
            raise ValueError(f"PaperConfig.probe_seed_offset must be an int, got {self.probe_seed_offset!r}")

    def check_tokens(self, num_tokens: int, kind: str = "freq") -> None:
        """Raise a one-line ValueError when the options cannot hold for ``num_tokens`` = N' tokens:
        a K that puts every token in the always-recompute band, more probes than tokens outside the
        band, or (with a budget) a band + probes larger than the budget (which would override it)."""
        K = self.band(num_tokens, kind)
        probes = self.num_probes if self.mode in ("full", "no_energy") else 0
        if self.K is not None and self.K >= num_tokens - 1:
            raise ValueError(f"PaperConfig.K = {self.K} puts all N' = {num_tokens} tokens in the always-recomputed "
                             f"band 0..K, so nothing would be cached; K must be < {num_tokens - 1}")
        if probes > num_tokens - K - 1:
            raise ValueError(f"PaperConfig.num_probes = {probes} exceeds the {num_tokens - K - 1} tokens outside the "
                             f"band 0..{K} (N' = {num_tokens})")

    def band(self, num_tokens: int, kind: str = "freq") -> int:
        """Resolved K for ``num_tokens`` = N' tokens of a ``kind`` transform (``freq``, ``chart``, ``time``)."""
        if self.K is not None:
            return self.K
        return 0 if kind == "time" else num_tokens // 10


E2CRFStats = SamplingStats  # the package's statistics, on the reference too
_Accumulator = StepRecorder


class CachedEpsFn:
    """Stateful ``EpsFn`` for one batch: applies the E2-CRF policy, then the cached forward.

    Called as ``eps_fn(z (B,N',C), t (B,), i) -> eps_hat (B,N',C)`` by the EM loop.
    """

    WARM_STEPS = 10  # memory growth is measured from here to the end of the batch

    def __init__(self, net: torch.nn.Module, config: PaperConfig, sample_ids: Tensor, seed: int,
                 num_tokens: int, token_dim: int, acc: _Accumulator | None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        from pyfdc.sampling.solvers import NoiseStream

        self.net, self.cfg, self.acc = net, config, acc
        self.B, self.T = int(sample_ids.numel()), num_tokens
        self.K = config.band(num_tokens)
        mode = config.mode
        self.use_drift = mode not in ("fixed",)
        self.use_probes = mode in ("full", "no_energy") and config.num_probes > 0
        self.use_warn = mode != "fixed"
        self.energy = mode != "no_energy"
        self.fwd = None
        if mode != "uncached":
            self.fwd = CachedForward(net, self.B, num_tokens, token_dim, naive_kv=(mode == "naive_kv"),
                                     max_probes=max(config.num_probes, 1),
                                     dense_fraction=config.dense_fraction, dtype=dtype, device=device)
        B, T = self.B, self.T
        dev = torch.device(device)
        self.d = self.fwd.d if self.fwd is not None else 1
        self.no_probe = torch.zeros(B, T, dtype=torch.bool, device=dev)
        self.taken = torch.zeros(B, T + 1, dtype=torch.bool, device=dev)
        self.force = torch.zeros(B, dtype=torch.bool, device=dev)
        self.warn = torch.zeros(B, dtype=torch.bool, device=dev)
        self.intensity = EventIntensity(B, T, self.d, config.eta, dtype=dtype, device=dev)
        self.alpha = self.intensity.alpha
        self.r_used = torch.zeros(B, dtype=dtype, device=dev)
        self.probe_err = torch.zeros(B, dtype=dtype, device=dev)
        self.steps_seen = 0
        self.rss_warm: int | None = None
        self.rss_max = 0
        self.probe_stream = None
        if self.use_probes:
            ones = torch.ones(T, 1, dtype=dtype, device=dev)
            self.probe_stream = NoiseStream(seed + config.probe_seed_offset, sample_ids, (T, 1), ones)

    @property
    def cache_bytes(self) -> int:
        extra = sum(t.numel() * t.element_size() for t in
                    (self.no_probe, self.taken, self.force, self.warn, self.r_used, self.probe_err))
        return (self.fwd.cache_bytes if self.fwd is not None else 0) + extra + self.intensity.nbytes

    def _mark_selected(self, idx: Tensor) -> None:
        """``taken[b, κ]`` = token κ is in sample b's recompute set (column T absorbs the -1 padding)."""
        index_mask(idx, self.T, self.taken)

    def _draw_probes(self) -> Tensor:
        """Probe tokens among those the rules left cached (``taken`` must be marked): (B, P) int64, -1 where none is left."""
        B, T, P = self.B, self.T, self.cfg.num_probes
        score = self.probe_stream().reshape(B, T).to(torch.float32)
        score = score.masked_fill(self.taken[:, :T], math.inf)
        p = min(P, T)
        val, pidx = torch.topk(score, p, dim=1, largest=False, sorted=True)
        return torch.where(torch.isfinite(val), pidx, torch.full_like(pidx, -1))

    def __call__(self, z: Tensor, t: Tensor, i: int) -> Tensor:
        cfg, B = self.cfg, self.B
        if cfg.mode == "uncached":
            if self.acc is not None:
                self.acc.count[i] += B * self.T
                self.acc.refresh[i] = True
            self._memory_probe()
            return self.net(z, t)
        first = self.steps_seen == 0
        # event intensity from features of steps i-1, i-2 (Eq. 12, Δ = 1) and the last probe error
        r = self.intensity.current()
        self.r_used.copy_(r)
        periodic = first or i % cfg.R == 0
        self.force.fill_(periodic)
        warn = self.warn
        warn.zero_()
        if self.use_warn:
            torch.gt(r, cfg.tau_warn, out=warn)
            self.force |= warn
        tau0 = cfg.tau0 if self.use_drift else math.inf
        idx, count = ops.select_tokens(z, self.fwd.z_ref, self.no_probe, self.force, self.K, tau0,
                                       cfg.eps, self.energy, idx_out=self.fwd.idx, count_out=self.fwd.count)
        probes = None
        if self.use_probes or self.acc is not None:
            self._mark_selected(idx)  # once per step: probes and stats both read it
        if self.use_probes:
            probes = self._draw_probes()
            self.intensity.step_size(cfg.tau_safe, cfg.alpha_max)
        eps_hat, probe_err, feat = self.fwd(z, t, idx, count, probes, self.alpha, cfg.eta)
        eps_hat = self.net.finish(eps_hat, z, t)  # the time head and the pinned coordinates, as in forward
        # next step's intensity: relative change of the final-layer features
        if probe_err is not None:
            self.probe_err.copy_(probe_err)
        self.intensity.update(feat, probe_err)
        self._record(i, idx, count, probes, warn, periodic)
        self._memory_probe()
        return eps_hat

    def _memory_probe(self) -> None:
        """Count the step; sample the RSS every 10 steps from step ``WARM_STEPS`` on."""
        self.steps_seen += 1
        if self.steps_seen >= self.WARM_STEPS and self.steps_seen % 10 == 0:
            now = rss_bytes()
            if self.rss_warm is None:
                self.rss_warm = now
            self.rss_max = max(self.rss_max, now)

    @property
    def rss_growth(self) -> int:
        """Max sampled RSS after warm-up minus the RSS at warm-up (bytes, >= 0)."""
        return 0 if self.rss_warm is None else max(self.rss_max - self.rss_warm, 0)

    def _record(self, i: int, idx: Tensor, count: Tensor, probes: Tensor | None, warn: Tensor,
                periodic: bool) -> None:
        acc = self.acc
        if acc is None:
            return
        T = self.T
        taken = self.taken  # marked with the recompute set in __call__
        if probes is not None:
            taken.scatter_(1, torch.where(probes < 0, T, probes), True)
            acc.err[i] += self.probe_err.sum()
            acc.probe[i] |= (probes >= 0).any()
        recomputed = taken[:, :T]
        acc.count[i] += recomputed.sum()
        acc.cached += (~recomputed).sum(dim=0)
        acc.r[i] += self.r_used.sum()
        acc.refresh[i] |= self.force.any() | periodic
        acc.warn[i] |= warn.any()


class PaperSampler:
    """Euler–Maruyama sampling with E2-CRF cached score evaluations.

    Same noise, schedule and output conventions as :class:`pyfdc.sampling.solvers.Sampler` (per-sample
    :class:`~pyfdc.sampling.solvers.NoiseStream`, so sample ``j`` gets the same noise whatever its batch);
    only the network evaluation differs.
    """

    def __init__(self, model: "DiffusionModel", config: PaperConfig = PaperConfig()) -> None:
        if not isinstance(config, PaperConfig):
            raise TypeError(f"config must be an PaperConfig, got {type(config).__name__}")
        self.model, self.config = model, config

    def _parts(self) -> tuple[torch.nn.Module, Any, Any, Tensor]:
        m = self.model
        net, transform, sde = m.net, m.transform, m.sde
        p = next(net.parameters())
        if p.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"PaperSampler supports float32 and float64 models, got {p.dtype} (convert with "
                             f"model.net.float(); bfloat16/float16 caches are not supported)")
        mask = transform.mask(device=p.device, dtype=p.dtype)
        return net, transform, sde, mask

    @torch.no_grad()
    def sample_tokens(self, num_samples: int, steps: int = 1000, batch_size: int = 64, seed: int = 0,
                      progress: bool = True, sample_offset: int = 0,
                      world: Any = None) -> tuple[Tensor, E2CRFStats]:
        """Token-space samples ``(S, T, C)`` and stats. Sample ``j`` uses noise id ``sample_offset + j``.

        With a multi-process ``world`` (:mod:`pyfdc.distributed`) each rank passes its own block of ids and
        the returned stats are those of the whole job (sums over ranks; wall time and memory: the maximum).
        """
        from pyfdc.sampling.solvers import NoiseStream, check_run_ids, euler_maruyama

        for name, v, lo in (("num_samples", num_samples, 1), ("steps", steps, 1), ("batch_size", batch_size, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        check_run_ids(seed, sample_offset)
        net, transform, sde, mask = self._parts()
        config = self.config
        config.check_tokens(transform.num_tokens, transform.kind)
        if config.K is None:  # resolve the band for this model's tokens once (time tokens have none)
            config = replace(config, K=config.band(transform.num_tokens, transform.kind))
        T, C = transform.num_tokens, transform.token_dim
        dev = mask.device
        was_training = net.training
        net.eval()
        stats = E2CRFStats(method="em", cache=f"paper-{config.mode}", num_tokens=T, steps=steps)
        acc = _Accumulator(steps, T, dev)
        out = []
        growth = 0
        start = time.perf_counter()
        try:
            for b0 in range(0, num_samples, batch_size):
                n = min(batch_size, num_samples - b0)
                ids = torch.arange(sample_offset + b0, sample_offset + b0 + n)
                stream = NoiseStream(seed, ids, (T, C), mask)
                eps_fn = CachedEpsFn(net, config, ids, seed, T, C, acc, dtype=mask.dtype, device=dev)
                stats.cache_bytes = max(stats.cache_bytes, eps_fn.cache_bytes)
                z = stream()
                solve_fn = self.model.sampling_eps_fn(eps_fn)  # support bounds (pyfdc.core.support), as Sampler
                z = euler_maruyama(solve_fn, sde, z, mask, steps, stream, progress=progress)
                growth = max(growth, getattr(eps_fn, "rss_growth", 0))
                acc.samples += n
                out.append(z)
        finally:
            net.train(was_training)
        stats.wall_time_s = time.perf_counter() - start
        stats.peak_rss_growth_bytes = growth
        if world is not None and world.active:
            from pyfdc.distributed import all_max

            acc.all_reduce(world)
            wall, rss, cache = all_max(world, [stats.wall_time_s, stats.peak_rss_growth_bytes, stats.cache_bytes])
            stats.wall_time_s, stats.peak_rss_growth_bytes, stats.cache_bytes = wall, int(rss), int(cache)
        acc.finish(stats)
        return torch.cat(out, dim=0), stats

    def sample(self, num_samples: int, steps: int = 1000, batch_size: int = 64, seed: int = 0,
               progress: bool = True, sample_offset: int = 0, world: Any = None) -> tuple[Tensor, E2CRFStats]:
        """Samples ``(S, N, M)`` in original units, and the run's :class:`E2CRFStats` (see ``sample_tokens``)."""
        z, stats = self.sample_tokens(num_samples, steps, batch_size, seed, progress, sample_offset, world)
        return self.model.decode_samples(z), stats
