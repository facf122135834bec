"""Fake (meta) kernels of pyfdc's compiled ops, for torch.compile, FakeTensor and opcheck.

The ops only mutate their ``Tensor(a!)`` arguments and return nothing, so a fake kernel checks
the arguments' shapes, dtypes and devices (the same checks as the real kernels) and returns None.
"""
from __future__ import annotations

import torch

from . import _checks


@torch.library.register_fake("pyfdc::kv_scatter")
def _kv_scatter_fake(k_cache, v_cache, layer, idx, k_new, v_new):
    _checks.check_kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new)


@torch.library.register_fake("pyfdc::select_tokens")
def _select_tokens_fake(z, z_ref, probe_mask, force, K, tau0, eps, energy_weighted, idx_out, count_out):
    _checks.check_select_tokens(z, z_ref, probe_mask, force, K, tau0, eps, idx_out, count_out)


@torch.library.register_fake("pyfdc::error_feedback")
def _error_feedback_fake(crf, fresh, idx, alpha, err_out):
    _checks.check_error_feedback(crf, fresh, idx, alpha, err_out)


@torch.library.register_fake("pyfdc::select_budget")
def _select_budget_fake(z, z_ref, probes, K, tau0, eps, energy_weighted, idx_out, overflow_out):
    _checks.check_select_budget(z, z_ref, probes, K, tau0, eps, idx_out, overflow_out)
