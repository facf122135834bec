"""Drawing one sample set with the sampler a CLI command asks for (shared by ``sample``, ``benchmark``
and ``demo``)."""
from __future__ import annotations

import time
from typing import Any


def draw_samples(model: Any, sampler: str, num_samples: int, steps: int, batch_size: int, seed: int,
                 progress: bool, e2crf_config: Any = None, sample_offset: int = 0,
                 world: Any = None, compile: bool = False) -> tuple[Any, dict[str, Any] | None, float]:
    """Run one sampler (``e2crf``: Euler–Maruyama with the E2-CRF cache ``e2crf_config``; ``None`` there runs
    uncached, as a calibration that found no budget says); return ``(samples (S, N, M) numpy, e2crf stats dict or None, wall seconds)``.

    Sample ``j`` uses noise id ``sample_offset + j``; with a multi-process ``world`` the stats are
    reduced over its ranks (each rank passing its own ids)."""
    import torch

    from pyfdc.sampling.sampler import Sampler

    t0 = time.perf_counter()
    sm = Sampler(model, "em" if sampler == "e2crf" else sampler, compile=compile,
                 cache=e2crf_config if sampler == "e2crf" else None)
    with torch.inference_mode():
        samples = sm.sample(num_samples, steps=steps, batch_size=batch_size, seed=seed, progress=progress,
                            sample_offset=sample_offset, world=world)
    wall = time.perf_counter() - t0
    stats = sm.stats.to_dict() if sampler == "e2crf" else None
    return samples.detach().cpu().numpy(), stats, wall
