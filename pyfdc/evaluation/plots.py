"""PNG plots: spectral density, sample grids, E2-CRF statistics. Agg only, written atomically."""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pyfdc._io import atomic_write_bytes

MAX_CHANNEL_PANELS = 6
PathLike = str | os.PathLike[str]


def _series(x: Any, arg: str) -> np.ndarray:
    """Check ``x`` is a finite (n, N, M) array with n >= 1; return it as float64 numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"{arg} must have shape (n, N, M) with n, N, M >= 1, got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{arg} contains NaN/Inf")
    return arr


def _generated(real: np.ndarray, generated: Any) -> dict[str, np.ndarray]:
    """Normalise ``generated`` (an array or {label: array}) to a dict of arrays shaped like ``real``."""
    gen = {"generated": generated} if not isinstance(generated, Mapping) else dict(generated)
    if not gen:
        raise ValueError("generated must hold at least one (n, N, M) array")
    out = {}
    for label, arr in gen.items():
        a = _series(arr, f"generated[{label!r}]")
        if a.shape[1:] != real.shape[1:]:
            raise ValueError(f"generated[{label!r}] has (N, M) = {a.shape[1:]}, real has {real.shape[1:]}")
        out[str(label)] = a
    return out


def _save(fig: Figure, path: PathLike) -> None:
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def spectral_density(x: np.ndarray) -> np.ndarray:
    """Mean power ``E|X_κ|²`` of the orthonormal rfft per bin and channel: (n, N, M) -> (N//2+1, M)."""
    return (np.abs(np.fft.rfft(x, axis=1, norm="ortho")) ** 2).mean(axis=0)


def plot_spectral_density(real: Any, generated: Any, path: PathLike, title: str = "Spectral density") -> None:
    """Mean |X_κ|² per frequency bin (log y) of ``real`` (n, N, M) vs each generated set, one panel per channel.

    ``generated``: an (S, N, M) array or ``{label: (S, N, M)}``. At most 6 channels are drawn.
    """
    r = _series(real, "real")
    gen = _generated(r, generated)
    m = min(r.shape[2], MAX_CHANNEL_PANELS)
    fig = Figure(figsize=(4.5 * m, 3.5))
    axes = fig.subplots(1, m, squeeze=False)[0]
    curves = {"real": spectral_density(r), **{k: spectral_density(v) for k, v in gen.items()}}
    floor = 1e-12 * max(float(c.max()) for c in curves.values()) or 1e-300  # log axis: no zeros
    for ch, ax in enumerate(axes):
        for label, c in curves.items():
            ax.semilogy(np.arange(len(c)), np.maximum(c[:, ch], floor), label=label,
                        lw=2.0 if label == "real" else 1.2, color="k" if label == "real" else None)
        ax.set_xlabel("frequency bin κ")
        ax.set_ylabel("mean |X_κ|²")
        ax.set_title(f"{title} — channel {ch}" if r.shape[2] > 1 else title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    _save(fig, path)


def _grid(rows: dict[str, np.ndarray], path: PathLike, n: int) -> None:
    """One row per labelled (n, N, M) set, the first ``n`` series as columns, channels overlaid."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    cols = min(n, max(len(v) for v in rows.values()))
    fig = Figure(figsize=(2.2 * cols, 1.8 * len(rows)))
    axes = fig.subplots(len(rows), cols, squeeze=False, sharex=True, sharey=True)
    for i, (label, arr) in enumerate(rows.items()):
        for j in range(cols):
            ax: Axes = axes[i, j]
            if j < len(arr):
                ax.plot(arr[j], lw=0.9)
            else:
                ax.set_axis_off()
            if j == 0:
                ax.set_ylabel(label)
    fig.suptitle(" vs ".join(rows) + " samples")
    _save(fig, path)


def plot_samples(real: Any, generated: Any, path: PathLike, n: int = 8) -> None:
    """Grid of the first ``n`` series of ``real`` (n, N, M) and each generated set (array or {label: array}):
    one row per source, real first; channels overlaid in each panel."""
    r = _series(real, "real")
    _grid({"real": r, **_generated(r, generated)}, path, n)


def plot_sample_grid(samples: Any, path: PathLike, real: Any | None = None, n: int = 8) -> None:
    """Grid of generated ``samples`` (S, N, M), with a ``real`` row above when given."""
    if real is not None:
        plot_samples(real, samples, path, n)
    else:
        _grid({"generated": _series(samples, "samples")}, path, n)


def _stat_list(stats: Mapping[str, Any], key: str, *, ints: bool = False) -> np.ndarray:
    if key not in stats:
        raise ValueError(f"stats is missing key {key!r}; expected recomputed_fraction, event_intensity, "
                         "refresh_steps, token_hit_rate")
    val = stats[key]
    if not isinstance(val, (Sequence, np.ndarray)) or isinstance(val, str):
        raise ValueError(f"stats[{key!r}] must be a list, got {type(val).__name__}")
    arr = np.asarray(val, dtype=np.int64 if ints else np.float64).reshape(-1)
    if not ints and not np.isfinite(arr).all():
        raise ValueError(f"stats[{key!r}] contains NaN/Inf")
    return arr


def plot_e2crf_stats(stats: Any, path: PathLike) -> None:
    """Three panels of an E2-CRF run: event intensity r(i) with refresh markers, recomputed fraction per
    step, cache hit rate per frequency token.

    ``stats``: ``E2CRFStats`` or its ``to_dict()`` with ``event_intensity``, ``recomputed_fraction`` (per
    step, same length), ``refresh_steps`` (step indices) and ``token_hit_rate`` (per token, in [0, 1]).
    """
    if hasattr(stats, "to_dict"):
        stats = stats.to_dict()
    if not isinstance(stats, Mapping):
        raise ValueError(f"stats must be a dict or E2CRFStats, got {type(stats).__name__}")
    r = _stat_list(stats, "event_intensity")
    f = _stat_list(stats, "recomputed_fraction")
    refresh = _stat_list(stats, "refresh_steps", ints=True)
    hit = _stat_list(stats, "token_hit_rate")
    if len(f) == 0 or len(r) != len(f):
        raise ValueError(f"event_intensity ({len(r)}) and recomputed_fraction ({len(f)}) need the same, non-zero length")
    if refresh.size and (refresh.min() < 0 or refresh.max() >= len(f)):
        raise ValueError(f"refresh_steps must lie in [0, {len(f) - 1}], got {refresh.min()}..{refresh.max()}")
    if len(hit) == 0 or hit.min() < 0 or hit.max() > 1 or f.min() < 0 or f.max() > 1:
        raise ValueError("token_hit_rate must be non-empty and, like recomputed_fraction, lie in [0, 1]")
    steps = np.arange(len(f))
    fig = Figure(figsize=(10, 8.5))
    ax_r, ax_f, ax_h = fig.subplots(3, 1)
    ax_r.plot(steps, r, lw=1.0, label="r(i)")
    if refresh.size:
        ax_r.plot(refresh, r[refresh], "rv", ms=5, label="refresh")
    ax_r.set_ylabel("event intensity r(i)")
    ax_r.legend(loc="upper right")
    ax_f.plot(steps, f, lw=1.0, color="tab:green")
    for s in refresh:
        ax_f.axvline(s, color="r", lw=0.4, alpha=0.4)
    ax_f.set_ylim(0, 1.02)
    ax_f.set_xlabel("sampling step i")
    ax_f.set_ylabel("recomputed fraction")
    ax_f.set_title(f"mean recomputed fraction {f.mean():.3f}")
    ax_h.bar(np.arange(len(hit)), hit, width=0.9, color="tab:purple")
    ax_h.set_ylim(0, 1.02)
    ax_h.set_xlabel("frequency token κ")
    ax_h.set_ylabel("cache hit rate")
    for ax in (ax_r, ax_f, ax_h):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_front(rows: Sequence[Mapping[str, Any]], path: PathLike, title: str = "Speed-quality front") -> None:
    """Wall time per batch (log x) vs C2ST against the uncached 1,000-step reference (y).

    ``rows`` as in :func:`pyfdc.evaluation.front.run_front`: uncached samplers are drawn as one line per
    kind (the front), cached ones as labelled points, the floor as a band (its Wilson 95% CI).
    """
    if not rows:
        raise ValueError("plot_front needs at least one row")
    fig = Figure(figsize=(9, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    floor = next((r for r in rows if "floor" in str(r["sampler"])), None)
    if floor is not None:
        h = floor["c2st"][floor["c2st"]["headline_classifier"]]
        ax.axhspan(h["ci_low"], h["ci_high"], color="0.85", label="floor (2nd EM-1000 seed), 95% CI")
    styles = {"em": ("C0", "o"), "dpm2m": ("C1", "s"), "ddim": ("C2", "^")}
    for kind, (color, marker) in styles.items():
        pts = sorted((r["batch_seconds"], r["c2st"]["headline"], r["steps"]) for r in rows
                     if r["kind"] == kind and "floor" not in str(r["sampler"]))
        if kind == "em" and floor is not None:
            pts = sorted(pts + [(floor["batch_seconds"], floor["c2st"]["headline"], 1000)])
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, marker=marker, label=f"uncached {kind}")
        for x, y, s in pts:
            ax.annotate(str(s), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7, color=color)
    cached = [r for r in rows if not r["uncached"]]
    for i, r in enumerate(cached):
        ax.scatter([r["batch_seconds"]], [r["c2st"]["headline"]], color="C3", marker="*", s=80, zorder=3,
                   label="E2-CRF" if i == 0 else None)
        ax.annotate(str(r["sampler"]).replace("e2crf", ""), (r["batch_seconds"], r["c2st"]["headline"]),
                    textcoords="offset points", xytext=(4, -9), fontsize=7, color="C3")
    ax.set_xscale("log")
    ax.set_xlabel("wall time per batch [s] (log)")
    ax.set_ylabel("C2ST accuracy vs uncached EM-1000 (0.5 = same)")
    ax.set_ylim(0.45, 1.02)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    _save(fig, path)


def plot_calibration(calibration: Mapping[str, Any], path: PathLike) -> None:
    """Per candidate (x: budget): shadow deviation and worst band error against their targets, and the
    shadow speedup; the chosen candidate is marked. ``calibration`` is ``Calibration.to_dict()``."""
    rows = list(calibration.get("rows", []))
    if not rows:
        raise ValueError("calibration has no candidate rows to plot")
    labels = [str(r["candidate"].get("budget", r["candidate"])) for r in rows]
    x = np.arange(len(rows))
    targets = calibration.get("targets", {})
    panels = [(key, title, targets.get(limit)) for key, title, limit in (
        ("shift", "largest statistic shift (sd)", "max_shift"),
        ("deviation_median", "median paired deviation", "max_deviation"),
        ("worst_band_error", "worst |band power error|", "max_band_error"),
        ("speedup", "shadow speedup vs uncached", "min_speedup")) if all(key in r for r in rows)]
    fig = Figure(figsize=(3.4 * len(panels), 3.2))
    for k, (key, title, limit) in enumerate(panels):
        ax: Axes = fig.add_subplot(1, len(panels), k + 1)
        colors = ["tab:green" if r["passed"] else "tab:red" for r in rows]
        ax.bar(x, [float(r[key]) for r in rows], color=colors)
        if limit is not None:
            ax.axhline(float(limit), color="black", linestyle="--", linewidth=1, label="target")
            ax.legend(fontsize=7)
        if key != "speedup":
            ax.set_yscale("log")  # errors span orders of magnitude between budgets
        ax.set_xticks(x, labels)
        ax.set_xlabel("budget")
        ax.set_title(title, fontsize=9)
    chosen = "uncached fallback" if calibration.get("fallback") else f"budget {calibration['config'].get('budget')}"
    fig.suptitle(f"E2-CRF calibration, {calibration.get('steps')} {calibration.get('solver')} steps: {chosen} "
                 "(green: passes every target)", fontsize=10)
    _save(fig, path)
