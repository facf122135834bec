"""Drawing one sample set with the sampler a CLI command asks for (shared by ``sample``, ``benchmark``
and ``demo``)."""
from __future__ import annotations

import time
from typing import Any


def draw_samples(model: Any, sampler: str, num_samples: int, steps: int, batch_size: int, seed: int,
                 progress: bool, e2crf_config: Any = None, sample_offset: int = 0,
                 world: Any = None) -> tuple[Any, dict[str, Any] | None, float]:
    """Run one sampler; return ``(samples (S, N, M) numpy, e2crf stats dict or None, wall seconds)``.

    Sample ``j`` uses noise id ``sample_offset + j``; with a multi-process ``world`` the E2-CRF stats are
    reduced over its ranks (each rank passing its own ids)."""
    import torch

    t0 = time.perf_counter()
    stats = None
    with torch.inference_mode():
        if sampler == "e2crf":
            from pyfdc.e2crf import E2CRFConfig, E2CRFSampler

            sm = E2CRFSampler(model, e2crf_config or E2CRFConfig())
            samples, st = sm.sample(num_samples, steps=steps, batch_size=batch_size, seed=seed,
                                    progress=progress, sample_offset=sample_offset, world=world)
            stats = st.to_dict()
        else:
            from pyfdc.sampling import Sampler

            samples = Sampler(model, method=sampler).sample(num_samples, steps=steps,
                                                            batch_size=batch_size, seed=seed,
                                                            progress=progress, sample_offset=sample_offset)
    wall = time.perf_counter() - t0
    return samples.detach().cpu().numpy(), stats, wall
