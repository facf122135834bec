"""Argument checks for the reference twins and the fake kernels.

Word for word the checks of ``csrc/checks.h`` (same order, same messages), so a bad argument gets
the same ``ValueError`` whichever backend runs. Shape-only checks run on fake tensors too; the
index range check reads values and runs for CPU tensors only (on CUDA it would cost a host sync
per call; the CUDA kernels skip out-of-range entries instead).
"""
from __future__ import annotations

import math

import torch

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _shape(seq) -> str:
    return "[" + ", ".join(str(int(s)) for s in seq) + "]"


def check_floating(op: str, arg: str, t: torch.Tensor) -> None:
    if t.dtype not in _FLOATING:
        raise ValueError(
            f"{op}: {arg} must have a floating dtype (float16, bfloat16, float32, float64), "
            f"got {_dtype_name(t.dtype)}"
        )


def check_dtype(op: str, arg: str, t: torch.Tensor, want: torch.dtype, like: str | None = None) -> None:
    if t.dtype != want:
        like_txt = f" like {like}" if like else ""
        raise ValueError(f"{op}: {arg} must have dtype {_dtype_name(want)}{like_txt}, got {_dtype_name(t.dtype)}")


def check_device(op: str, arg: str, t: torch.Tensor, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: {arg} must be on the device of {ref_name} ({ref.device}), got {t.device}")


def check_rank(op: str, arg: str, t: torch.Tensor, rank: int, spec: str) -> None:
    if t.dim() != rank:
        raise ValueError(f"{op}: {arg} must have shape {spec} ({rank} dims), got {_shape(t.shape)}")


def check_shape(op: str, arg: str, t: torch.Tensor, spec: str, want: tuple[int, ...]) -> None:
    if tuple(t.shape) != tuple(want):
        raise ValueError(f"{op}: {arg} must have shape {spec} = {_shape(want)}, got {_shape(t.shape)}")


def check_index_range(op: str, idx: torch.Tensor, num_tokens: int) -> None:
    """Entries are -1 (padding) or 0 <= j < N'. CPU only (reads values)."""
    if idx.device.type != "cpu" or idx.numel() == 0:
        return
    bad = (idx < -1) | (idx >= num_tokens)
    if bool(bad.any()):
        b, s = (int(v) for v in bad.nonzero()[0])
        raise ValueError(
            f"{op}: idx[{b}, {s}] = {int(idx[b, s])} is out of range: entries must be -1 (padding) "
            f"or 0 <= j < N' = {num_tokens}"
        )


def check_kv_scatter(k_cache, v_cache, layer, idx, k_new, v_new) -> tuple[int, ...]:
    """Returns (L, B, H, N', dh, k)."""
    op = "kv_scatter"
    check_floating(op, "k_cache", k_cache)
    check_rank(op, "k_cache", k_cache, 5, "(L, B, H, N', dh)")
    for arg, t in (("v_cache", v_cache), ("idx", idx), ("k_new", k_new), ("v_new", v_new)):
        check_device(op, arg, t, k_cache, "k_cache")
    check_dtype(op, "v_cache", v_cache, k_cache.dtype, "k_cache")
    check_dtype(op, "idx", idx, torch.int64)
    check_dtype(op, "k_new", k_new, k_cache.dtype, "k_cache")
    check_dtype(op, "v_new", v_new, k_cache.dtype, "k_cache")
    L, B, H, T, dh = k_cache.shape
    S = idx.shape[1] if idx.dim() == 2 else 0
    check_shape(op, "v_cache", v_cache, "(L, B, H, N', dh)", (L, B, H, T, dh))
    if not 0 <= layer < L:
        raise ValueError(f"{op}: layer must be in [0, L) = [0, {L}), got {layer}")
    check_rank(op, "idx", idx, 2, "(B, k)")
    check_shape(op, "idx", idx, "(B, k)", (B, S))
    check_shape(op, "k_new", k_new, "(B, H, k, dh)", (B, H, S, dh))
    check_shape(op, "v_new", v_new, "(B, H, k, dh)", (B, H, S, dh))
    return L, B, H, T, dh, S


def check_select_tokens(z, z_ref, probe_mask, force, K, tau0, eps, idx_out, count_out) -> tuple[int, int, int]:
    """Returns (B, N', 2M)."""
    op = "select_tokens"
    check_floating(op, "z", z)
    check_rank(op, "z", z, 3, "(B, N', 2M)")
    for arg, t in (("z_ref", z_ref), ("probe_mask", probe_mask), ("force", force), ("idx_out", idx_out),
                   ("count_out", count_out)):
        check_device(op, arg, t, z, "z")
    check_dtype(op, "z_ref", z_ref, z.dtype, "z")
    check_dtype(op, "probe_mask", probe_mask, torch.bool)
    check_dtype(op, "force", force, torch.bool)
    check_dtype(op, "idx_out", idx_out, torch.int64)
    check_dtype(op, "count_out", count_out, torch.int64)
    B, T, C = z.shape
    check_shape(op, "z_ref", z_ref, "(B, N', 2M)", (B, T, C))
    check_shape(op, "probe_mask", probe_mask, "(B, N')", (B, T))
    check_shape(op, "force", force, "(B,)", (B,))
    check_shape(op, "idx_out", idx_out, "(B, N')", (B, T))
    check_shape(op, "count_out", count_out, "(B,)", (B,))
    if K < 0:
        raise ValueError(f"{op}: K must be >= 0, got {K}")
    if math.isnan(tau0) or tau0 < 0:
        raise ValueError(f"{op}: tau0 must be >= 0 and not NaN, got {tau0}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{op}: eps must be finite and >= 0, got {eps}")
    return B, T, C


def check_select_budget(z, z_ref, probes, K, tau0, eps, idx_out, overflow_out) -> tuple[int, ...]:
    """Returns (B, N', 2M, P, k)."""
    op = "select_budget"
    check_floating(op, "z", z)
    check_rank(op, "z", z, 3, "(B, N', 2M)")
    for arg, t in (("z_ref", z_ref), ("probes", probes), ("idx_out", idx_out), ("overflow_out", overflow_out)):
        check_device(op, arg, t, z, "z")
    check_dtype(op, "z_ref", z_ref, z.dtype, "z")
    check_dtype(op, "probes", probes, torch.int64)
    check_dtype(op, "idx_out", idx_out, torch.int64)
    check_dtype(op, "overflow_out", overflow_out, torch.int64)
    check_rank(op, "probes", probes, 2, "(B, P)")
    check_rank(op, "idx_out", idx_out, 2, "(B, k)")
    B, T, C = z.shape
    P, k = probes.shape[1], idx_out.shape[1]
    check_shape(op, "z_ref", z_ref, "(B, N', 2M)", (B, T, C))
    check_shape(op, "probes", probes, "(B, P)", (B, P))
    check_shape(op, "idx_out", idx_out, "(B, k)", (B, k))
    check_shape(op, "overflow_out", overflow_out, "(B,)", (B,))
    if K < 0:
        raise ValueError(f"{op}: K must be >= 0, got {K}")
    if not (K + 1 + P <= k <= T):
        raise ValueError(f"{op}: the budget k = {k} must hold the band 0..K and the probes "
                         f"(K + 1 + P = {K + 1 + P}) and be at most N' = {T}")
    if math.isnan(tau0) or tau0 < 0:
        raise ValueError(f"{op}: tau0 must be >= 0 and not NaN, got {tau0}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"{op}: eps must be finite and >= 0, got {eps}")
    return B, T, C, P, k


def check_probe_rows(op: str, probes: torch.Tensor, K: int, num_tokens: int) -> None:
    """Probe rows are distinct tokens outside the band, K < j < N'. CPU only (reads values)."""
    if probes.device.type != "cpu" or probes.numel() == 0:
        return
    bad = (probes <= K) | (probes >= num_tokens)
    if bool(bad.any()):
        b, s = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{op}: probes[{b}, {s}] = {int(probes[b, s])} is out of range: probes must lie "
                         f"outside the band, K = {K} < j < N' = {num_tokens}")
    srt = probes.sort(dim=1).values
    dup = (srt[:, 1:] == srt[:, :-1]).any(dim=1)
    if bool(dup.any()):
        b = int(dup.nonzero()[0, 0])
        row = srt[b]
        j = int(row[1:][row[1:] == row[:-1]][0])
        raise ValueError(f"{op}: probes[{b}] repeats token {j}: a sample's probes must be distinct")


def check_error_feedback(crf, fresh, idx, alpha, err_out) -> tuple[int, int, int, int]:
    """Returns (B, N', d, k)."""
    op = "error_feedback"
    check_floating(op, "crf", crf)
    check_rank(op, "crf", crf, 3, "(B, N', d)")
    for arg, t in (("fresh", fresh), ("idx", idx), ("alpha", alpha), ("err_out", err_out)):
        check_device(op, arg, t, crf, "crf")
    check_dtype(op, "fresh", fresh, crf.dtype, "crf")
    check_dtype(op, "idx", idx, torch.int64)
    check_dtype(op, "alpha", alpha, crf.dtype, "crf")
    check_dtype(op, "err_out", err_out, crf.dtype, "crf")
    check_rank(op, "idx", idx, 2, "(B, k)")
    B, T, D = crf.shape
    S = idx.shape[1]
    check_shape(op, "idx", idx, "(B, k)", (B, S))
    check_shape(op, "fresh", fresh, "(B, k, d)", (B, S, D))
    check_shape(op, "alpha", alpha, "(B,)", (B,))
    check_shape(op, "err_out", err_out, "(B,)", (B,))
    return B, T, D, S
