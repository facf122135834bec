"""What a sampling run reports, on every path (uncached or cached): :class:`SamplingStats`, the per-step
sums it is made from (:class:`StepRecorder`) and the resident-memory probe (:class:`MemoryProbe`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class SamplingStats:
    """Per-step / per-token statistics of a sampling run (means over all samples).

    recomputed_fraction[i]: mean over samples of the share of the N' tokens the network recomputed at
    step ``i`` (probes included; 1.0 on every uncached step). event_intensity[i]: mean r_b(i) (Eq. 12).
    feedback_error[i]: mean relative probe error e_b(i) (0 where no probe ran). token_hit_rate[κ]:
    fraction of (sample, step) pairs where token κ was served from the cache. refresh_steps /
    warn_steps / probe_steps: steps where at least one sample was fully recomputed (uncached steps,
    step 0, every R, warn) / passed τ_warn / drew probes.
    cache_bytes: bytes of the cache's persistent buffers (0 uncached).
    peak_rss_growth_bytes: max RSS sampled every 10 steps after warm-up minus the RSS at step 10 (max
    over batches): ~0 when the loop holds on to nothing new per step once warmed up.
    budget_overflow: tokens per sample and step whose drift beat its threshold but that the budget left
    cached (0 = the budget was never the binding limit).
    """

    method: str
    cache: str
    num_tokens: int
    steps: int
    recomputed_fraction: list[float] = field(default_factory=list)
    event_intensity: list[float] = field(default_factory=list)
    feedback_error: list[float] = field(default_factory=list)
    token_hit_rate: list[float] = field(default_factory=list)
    refresh_steps: list[int] = field(default_factory=list)
    warn_steps: list[int] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    cache_bytes: int = 0
    budget_overflow: float = 0.0
    peak_rss_growth_bytes: int = 0
    wall_time_s: float = 0.0
    num_samples: int = 0

    @property
    def mean_recomputed_fraction(self) -> float:
        f = self.recomputed_fraction
        return float(sum(f) / len(f)) if f else 1.0

    @property
    def hit_rate(self) -> float:
        """Fraction of token evaluations served from the cache (= 1 − mean f)."""
        return 1.0 - self.mean_recomputed_fraction

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (plain floats/ints/lists) including the derived totals."""
        d = asdict(self)
        d["hit_rate"] = self.hit_rate
        d["mean_recomputed_fraction"] = self.mean_recomputed_fraction
        return d


class StepRecorder:
    """Per-step sums over batches, kept as device tensors (no host sync per step); see :class:`SamplingStats`.

    ``count (steps,)`` recomputed tokens, ``r``/``err (steps,)`` event intensity / probe error sums,
    ``cached (N',)`` cache hits per token, ``overflow ()``, and per-step flags ``refresh``/``warn``/``probe``.
    """

    def __init__(self, steps: int, num_tokens: int, device: torch.device | str = "cpu") -> None:
        z = dict(dtype=torch.float64, device=device)
        self.count, self.r, self.err = (torch.zeros(steps, **z) for _ in range(3))
        self.cached = torch.zeros(num_tokens, **z)
        self.overflow = torch.zeros((), **z)
        self.refresh, self.warn, self.probe = (torch.zeros(steps, dtype=torch.bool, device=device)
                                               for _ in range(3))
        self.samples = 0
        self.num_tokens = num_tokens

    def dense(self, batch: int) -> None:
        """A batch of ``batch`` samples ran uncached: every token recomputed at every step."""
        self.count += batch * self.num_tokens
        self.refresh.fill_(True)

    def all_reduce(self, world: Any) -> None:
        """Sum the per-step sums over the ranks of ``world``; a step flag holds if it held on any rank."""
        from pyfdc import distributed

        for t in (self.count, self.r, self.err, self.cached, self.overflow):
            distributed.all_reduce_(world, t, "sum")
        for name in ("refresh", "warn", "probe"):
            flags = getattr(self, name).to(torch.int32)
            setattr(self, name, distributed.all_reduce_(world, flags, "max").bool())
        self.samples = int(distributed.all_sum(world, [float(self.samples)])[0])

    def finish(self, stats: SamplingStats) -> None:
        """Write the means into ``stats``."""
        n, steps, T = max(self.samples, 1), stats.steps, stats.num_tokens
        stats.recomputed_fraction = (self.count / (n * T)).tolist()
        stats.event_intensity = (self.r / n).tolist()
        stats.feedback_error = (self.err / n).tolist()
        stats.token_hit_rate = (self.cached / (n * steps)).tolist()
        stats.refresh_steps = self.refresh.nonzero().flatten().tolist()
        stats.warn_steps = self.warn.nonzero().flatten().tolist()
        stats.probe_steps = self.probe.nonzero().flatten().tolist()
        stats.num_samples = self.samples
        stats.budget_overflow = float(self.overflow) / (n * steps)


class MemoryProbe:
    """Wraps an ``EpsFn``; samples the process RSS every 10 calls from call ``WARM_STEPS`` on."""

    WARM_STEPS = 10

    def __init__(self, eps_fn: Any) -> None:
        self.eps_fn = eps_fn
        self.calls = 0
        self.rss_warm: int | None = None
        self.rss_max = 0

    def __call__(self, z: Tensor, t: Tensor, i: int) -> Tensor:
        out = self.eps_fn(z, t, i)
        self.calls += 1
        if self.calls >= self.WARM_STEPS and self.calls % 10 == 0:
            now = rss_bytes()
            if self.rss_warm is None:
                self.rss_warm = now
            self.rss_max = max(self.rss_max, now)
        return out

    @property
    def growth(self) -> int:
        """Max sampled RSS after warm-up minus the RSS at warm-up (bytes, >= 0)."""
        return 0 if self.rss_warm is None else max(self.rss_max - self.rss_warm, 0)


def rss_bytes() -> int:
    """Current resident set size (Linux ``/proc``), else the peak RSS; 0 if neither is available."""
    try:
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024
    except Exception:  # pragma: no cover - non-POSIX
        return 0
