"""E2-CRF: a persistent per-layer KV cache over the tokens that recomputes a fixed share of them per step,
with error feedback keeping the drift bounded (Liu, Wang & Yu 2026, arXiv 2604.22901).

Read top-down in the order of the paper's Algorithm 1:

* :mod:`~pyfdc.e2crf.config` — the options (:class:`E2CRFConfig`) and their one parser;
* :mod:`~pyfdc.e2crf.intensity` — the event intensity ``r_b`` (Eq. 12) and the Eq. 14 step size;
* :mod:`~pyfdc.e2crf.kv_cache` — the persistent state (K/V per layer, cumulative residuals, references);
* :mod:`~pyfdc.e2crf.layers` — the layer loop over the cache;
* :mod:`~pyfdc.e2crf.step` — one cached step: selection (Eq. 13, :func:`pyfdc.ops.select_budget`),
  the recomputed rows, the error-feedback nudge (Eq. 14, :func:`pyfdc.ops.error_feedback`), the output;
* :mod:`~pyfdc.e2crf.policy` — per step: refresh, probes, warn refresh (Alg. 1 l.16); the binding a
  :class:`~pyfdc.sampling.sampler.Sampler` asks for;
* :mod:`~pyfdc.e2crf.calibrate` — the budget chosen per model from shadow samples.

Use: ``Sampler(model, "em", cache=E2CRFConfig())``.
"""
from __future__ import annotations

from pyfdc.e2crf import policy as _engine  # noqa: F401  (registers the binding of configs to models)
from pyfdc.e2crf.config import E2CRFConfig, uses_gaussian_output

__all__ = ["E2CRFConfig", "uses_gaussian_output"]
