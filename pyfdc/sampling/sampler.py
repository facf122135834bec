"""The one sampling loop: :class:`Sampler` runs any solver over a model, with or without a cache.

The solvers (:mod:`pyfdc.sampling.solvers`) are short functions over an ``EpsFn``; they never learn whether
the network behind it is cached. A cache is a config object handed to the sampler (``cache=``) — e.g.
:class:`pyfdc.e2crf.E2CRFConfig` — that binds itself to the model for one run (``cache.bind``) and hands
the loop one stateful ``EpsFn`` per batch. Statistics (recomputed fraction per step, refreshes, cache
memory, RSS growth, wall time) come out of every run as :attr:`Sampler.stats`, cached or not.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from pyfdc.sampling.solvers import (PRECISIONS, SAMPLING_METHODS, TIME_SCHEDULES, NoiseStream, check_run_ids,
                            network_eps_fn, solve)
from pyfdc.sampling.stats import MemoryProbe, SamplingStats, StepRecorder

if TYPE_CHECKING:
    from pyfdc.core.model import DiffusionModel

__all__ = ["Sampler"]


class Sampler:
    """Sampling from a :class:`~pyfdc.core.model.DiffusionModel`.

    Args:
        method: ``"em"`` (Euler–Maruyama on the reverse SDE), ``"ddim"`` (first-order ODE) or ``"dpm2m"``
            (DPM-Solver++(2M), second-order ODE).
        schedule: time grid of the deterministic solvers, ``"quadratic"`` (default) or ``"uniform"``.
        compile: ``torch.compile(fullgraph=True)`` the network (uncached) or the cache's step functions
            (built once per network and batch size; same samples to float rounding).
        precision: ``"bf16"`` runs the uncached network under bfloat16 autocast (the solver state stays in
            the model's dtype); caches run in the model's dtype.
        cache: ``None`` (every step evaluates the whole network) or a cache config with
            ``bind(model, steps=, method=, compile=, progress=)``, e.g. ``E2CRFConfig()`` (the model's
            calibrated E2-CRF) or ``E2CRFConfig(budget=0.35)``.

    Noise is per sample id (:class:`~pyfdc.sampling.solvers.NoiseStream`): sample ``j`` gets the same draws
    whatever batch it is in, so results do not depend on ``batch_size``.
    """

    def __init__(self, model: DiffusionModel, method: str = "em", schedule: str = "quadratic",
                 compile: bool = False, precision: str = "fp32", cache: Any = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile not in (True, False, 0, 1):
            raise ValueError(f"compile must be a bool, got {compile!r}")
        if method not in SAMPLING_METHODS:
            raise ValueError(f"method must be one of {SAMPLING_METHODS}, got {method!r}")
        if schedule not in TIME_SCHEDULES:
            raise ValueError(f"schedule must be one of {TIME_SCHEDULES}, got {schedule!r}")
        if cache is not None and not callable(getattr(cache, "bind", None)):
            raise TypeError(f"cache must be None or a cache config with .bind(...) (e.g. pyfdc.e2crf.E2CRFConfig), "
                            f"got {type(cache).__name__}")
        if cache is not None and precision != "fp32":
            raise ValueError("a cache runs in the model's dtype: precision='bf16' is for uncached sampling")
        for attr in ("net", "transform", "sde"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a DiffusionModel (missing .{attr}), got {type(model).__name__}")
        self.model, self.method, self.schedule = model, method, schedule
        self.compile, self.precision, self.cache = bool(compile), precision, cache
        self.stats: SamplingStats | None = None

    def _parts(self) -> tuple[torch.nn.Module, Tensor]:
        net = self.model.net
        p_dtype = next(net.parameters()).dtype
        if p_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"Sampler supports float32 and float64 models, got {p_dtype} (for reduced precision "
                             "keep the model in float32 and pass precision='bf16')")
        return net, self.model.transform.mask(device=net.mask.device, dtype=net.mask.dtype)

    @torch.no_grad()
    def sample_tokens(self, num_samples: int, steps: int = 1000, batch_size: int = 64, seed: int = 0,
                      progress: bool = True, sample_offset: int = 0, world: Any = None) -> Tensor:
        """Token-space samples ``(S, T, C)``; sample ``j`` uses noise id ``sample_offset + j``.

        With a multi-process ``world`` (:mod:`pyfdc.distributed`) each rank passes its own block of ids and
        :attr:`stats` are those of the whole job (sums over ranks; wall time and memory: the maximum).
        """
        for name, v in (("num_samples", num_samples), ("steps", steps), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        check_run_ids(seed, sample_offset)
        net, mask = self._parts()
        tr = self.model.transform
        T, C = tr.num_tokens, tr.token_dim
        bound = None if self.cache is None else self.cache.bind(
            self.model, steps=steps, method=self.method, compile=self.compile, progress=progress)
        stats = SamplingStats(method=self.method, cache="none" if bound is None else bound.name, num_tokens=T,
                              steps=steps)
        rec = StepRecorder(steps, T, mask.device)
        plain = None if bound is not None else self.model.sampling_eps_fn(
            network_eps_fn(net, self.compile, self.precision), compile=self.compile)
        bar = _bar(num_samples, f"sampling ({self.method}{'' if bound is None else ' + ' + bound.name})", progress)
        was_training = net.training
        net.eval()
        out: list[Tensor] = []
        start = time.perf_counter()
        try:
            for b0 in range(0, num_samples, batch_size):
                n = min(batch_size, num_samples - b0)
                ids = torch.arange(sample_offset + b0, sample_offset + b0 + n)
                stream = NoiseStream(seed, ids, (T, C), mask)
                if bound is None:
                    eps_fn = plain
                else:
                    policy = bound.batch(ids, seed, rec)
                    stats.cache_bytes = max(stats.cache_bytes, policy.cache_bytes)
                    # support bounds (pyfdc.core.support), as uncached
                    eps_fn = self.model.sampling_eps_fn(policy, compile=self.compile)
                probe = MemoryProbe(eps_fn)
                z = solve(self.method, probe, self.model.sde, stream(), mask, steps, stream, progress=progress,
                          schedule=self.schedule)
                if bound is None:
                    rec.dense(n)
                else:
                    bound.finish_batch(policy, rec)
                rec.samples += n
                stats.peak_rss_growth_bytes = max(stats.peak_rss_growth_bytes, probe.growth)
                out.append(z)
                if bar is not None:
                    bar.update(n)
        finally:
            net.train(was_training)
            if bar is not None:
                bar.close()
        stats.wall_time_s = time.perf_counter() - start
        _finish(stats, rec, world)
        self.stats = stats
        return torch.cat(out, dim=0)

    def sample(self, num_samples: int, steps: int = 1000, batch_size: int = 64, seed: int = 0,
               progress: bool = True, sample_offset: int = 0, world: Any = None) -> Tensor:
        """Samples ``(S, N, M)`` in the data's original units (noise ids ``sample_offset + j``); the run's
        statistics are in :attr:`stats` afterwards."""
        z = self.sample_tokens(num_samples, steps, batch_size, seed, progress, sample_offset, world)
        return self.model.decode_samples(z)


def _bar(total: int, desc: str, progress: bool) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="series", dynamic_ncols=True)


def _finish(stats: SamplingStats, rec: StepRecorder, world: Any) -> None:
    if world is not None and getattr(world, "active", False):
        from pyfdc.distributed import all_max

        rec.all_reduce(world)
        wall, rss, cache = all_max(world, [stats.wall_time_s, stats.peak_rss_growth_bytes, stats.cache_bytes])
        stats.wall_time_s, stats.peak_rss_growth_bytes, stats.cache_bytes = wall, int(rss), int(cache)
    rec.finish(stats)
