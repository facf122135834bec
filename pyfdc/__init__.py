"""pyfdc: frequency-domain diffusion for time series with E2-CRF caching.

``torch`` is imported first so the compiled extension (``pyfdc._C``) can register its ops.
Public names are resolved lazily so ``import pyfdc`` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

import torch  # noqa: F401  (must precede the compiled module)

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "ops": "pyfdc.ops",
    "TokenTransform": "pyfdc.core.spectral",
    "make_transform": "pyfdc.core.spectral",
    "VPSDE": "pyfdc.core.sde",
    "ModelConfig": "pyfdc.core.score_net",
    "ScoreTransformer": "pyfdc.core.score_net",
    "DiffusionModel": "pyfdc.core.model",
    "Sampler": "pyfdc.sampling.sampler",
    "SamplingStats": "pyfdc.sampling.stats",
    "load_dataset": "pyfdc.data",
    "load_series": "pyfdc.data",
    "Standardizer": "pyfdc.data",
    "sliced_wasserstein": "pyfdc.evaluation.metrics",
    "marginal_wasserstein": "pyfdc.evaluation.metrics",
    "train": "pyfdc.training.trainer",
    "TrainConfig": "pyfdc.training.trainer",
    "save_checkpoint": "pyfdc.core.checkpoint",
    "load_checkpoint": "pyfdc.core.checkpoint",
    "KVCache": "pyfdc.e2crf.kv_cache",
    "E2CRFConfig": "pyfdc.e2crf",
    "choose_sampler": "pyfdc.evaluation.auto",
    "model_auto_choice": "pyfdc.evaluation.auto",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pyfdc' has no attribute {name!r}")
    mod = importlib.import_module(module)
    return mod if module == f"pyfdc.{name}" else getattr(mod, name)


def __dir__() -> list[str]:
    return sorted(__all__)
