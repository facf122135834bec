"""Training the score network: AdamW, warmup + cosine LR, a checkpoint of the best or the last epoch.

``train`` fits a :class:`~pyfdc.core.model.DiffusionModel` on a
:class:`~pyfdc.data.TimeSeriesDataset`. Only the dataset's *train* part is touched: a seeded
validation split is carved out of it for model selection, and the standardizer is fitted on the
remaining (fit) part. The dataset's test split is held out for evaluation and never read here.

Output folder (a checkpoint directory, see :mod:`pyfdc.core.checkpoint`)::

    model.safetensors + config.json   the kept model (``TrainConfig.keep``: best-validation or last epoch;
                                      EMA weights when EMA is on)
    train_state.pt                    last finished epoch: weights, optimizer, schedule, RNG
    history.json                      per-epoch train/val loss, lr, wall time

Under ``torchrun`` (:mod:`pyfdc.distributed`) the network is wrapped in DistributedDataParallel: each
rank draws its share of every global batch of ``batch_size`` from a ``DistributedSampler`` seeded per
epoch, train and validation losses are all-reduced, the wall-clock budget is decided on rank 0 and
broadcast (no rank stops alone), and only rank 0 writes the checkpoint; ``train_state.pt`` holds
every rank's noise-RNG state, so ``resume`` continues the same job after a kill of any rank.

Everything random (initialisation, split, shuffling, diffusion times and noise) derives from
``TrainConfig.seed``, so two runs with the same seed and thread count give identical weights,
and an interrupted run resumed with ``resume=True`` ends with the same weights as an
uninterrupted one.

The parts live in their own modules: :mod:`pyfdc.training.data_stats` (the statistics fitted once on the fit
split and the model tokens), :mod:`pyfdc.training.loop` (epochs, EMA, LR schedule, validation, budget,
checkpoint and resume state), :mod:`pyfdc.training.ddp` (the distributed plumbing), :mod:`pyfdc.training.state`
(output folder and state file) and :mod:`pyfdc.training.config` (settings, schedule, split). This module checks
the arguments, claims the output folder and wires them together.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyfdc import distributed
from pyfdc.outdir import FolderLock
from pyfdc.training.config import TrainConfig, TrainResult, lr_factor, resolve_model_config, split_indices
from pyfdc.training.data_stats import TrainDataStats, fit_data_stats
from pyfdc.training.ddp import rank_batch, steps_per_epoch
from pyfdc.training.loop import TrainJob, _val_loss, build_parts, new_run, resume_run, run_epochs, run_summary
from pyfdc.training.state import HISTORY_FILE, STATE_FILE, _prepare_out_dir

# _val_loss is looked up here at run time: tests replace ``pyfdc.training.trainer._val_loss``

__all__ = ["TrainConfig", "TrainResult", "train", "resolve_model_config", "lr_factor", "split_indices",
           "STATE_FILE", "HISTORY_FILE"]


def _fingerprint(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- train


def _check_trainable(train_x: np.ndarray) -> None:
    """One-line errors for data no diffusion model can learn: too few series or steps, NaN/Inf, or every
    value the same (all-zero data included; spread judged relative to the level, in float64)."""
    if train_x.ndim != 3 or train_x.shape[0] < 2 or train_x.shape[1] < 2 or train_x.shape[2] < 1:
        raise ValueError(f"dataset.train must have shape (n >= 2, N >= 2, M) (a series needs at least 2 steps), "
                         f"got {list(train_x.shape)}")
    if not np.isfinite(train_x).all():
        raise ValueError("dataset.train contains NaN or Inf")
    flat = train_x.reshape(-1, train_x.shape[2]).astype(np.float64)
    spread, level = flat.max(axis=0) - flat.min(axis=0), np.abs(flat).max(axis=0)
    if ((spread == 0) | (spread <= 1e-12 * level)).all():
        what = "all zero" if not level.any() else "constant"
        raise ValueError(f"dataset.train is {what} (every channel holds one value over every series and step): "
                         "there is nothing to learn")


def train(
    dataset: Any,
    out_dir: str | Path,
    model_config: Any = None,
    transform_kind: str = "freq",
    train_config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    scaling: str = "channel",
    pinning: str = "auto",
) -> TrainResult:
    """Train a diffusion model on ``dataset.train`` and checkpoint it into ``out_dir``.

    Args:
        dataset: a :class:`~pyfdc.data.TimeSeriesDataset` (``train`` is ``(n, N, M)``).
        out_dir: checkpoint folder; must be empty or absent unless ``resume``/``overwrite``.
        model_config: ``None``/``"small"``, ``"paper"``, a ``ModelConfig`` or a dict of
            ``ModelConfig`` fields (token count/width are filled in from the data).
        transform_kind: ``"freq"`` (half-spectrum, the paper's model), ``"time"`` or ``"chart"``.
        train_config: optimisation settings (default ``TrainConfig()``).
        resume: continue from ``out_dir/train_state.pt`` (same data and settings; ``epochs`` and
            ``max_minutes`` may change).
        progress: show a tqdm bar with the running loss.
        overwrite: replace an existing checkpoint in ``out_dir``.
        scaling: ``"channel"`` (per-channel standardisation in time only) or ``"token"`` (also
            standardise every token coordinate after the transform; see :mod:`pyfdc.core.token_scaler`).
        pinning: ``"auto"`` pins coordinates that are constant over the fit split (exact noise
            prediction there, values restored on decoding; :mod:`pyfdc.core.pinning`), ``"off"`` does
            not. Only with ``scaling="channel"``.

    Returns:
        :class:`TrainResult` whose ``model`` is the checkpoint's (``TrainConfig.keep``; EMA when enabled).
    """
    lock = FolderLock(out_dir, "pyfdc train")  # held for the whole run: a second run into out_dir fails at once
    try:
        return _train_claimed(dataset, out_dir, model_config, transform_kind, train_config, resume, progress,
                              overwrite, scaling, pinning, lock)
    finally:
        lock.release()


def _checked_inputs(dataset: Any, train_config: TrainConfig | None, scaling: str,
                    pinning: str) -> tuple[TrainConfig, np.ndarray]:
    """``(cfg, train_x)``: the settings (default ``TrainConfig()``) and ``dataset.train`` ``(n, N, M)``,
    checked in the order their errors are reported."""
    from pyfdc.core.pinning import PINNING
    from pyfdc.core.token_scaler import SCALINGS

    cfg = train_config if train_config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(cfg).__name__}")
    if not hasattr(dataset, "train"):
        raise TypeError(f"dataset must be a TimeSeriesDataset (e.g. pyfdc.load_series(FILE)), got {type(dataset).__name__}")
    train_x = np.asarray(dataset.train)
    _check_trainable(train_x)
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if pinning not in PINNING:
        raise ValueError(f"pinning must be one of {PINNING}, got {pinning!r}")
    return cfg, train_x


def _run_meta(dataset: Any, train_x: np.ndarray, transform_kind: str, scaling: str, pinning: str,
              stats: TrainDataStats, fit_idx: np.ndarray, val_idx: np.ndarray) -> dict[str, Any]:
    """The data facts a checkpoint records and a resume must match."""
    return {
        "dataset": getattr(dataset, "name", None),
        "data_file": (getattr(dataset, "meta", None) or {}).get("source") == "file" and dict(dataset.meta) or None,
        "transform_kind": transform_kind,
        "scaling": scaling,
        "pinning": pinning,
        "pinned": 0 if stats.pins is None else stats.pins.count,
        "train_fingerprint": _fingerprint(train_x),
        "n_fit": int(len(fit_idx)),
        "n_val": int(len(val_idx)),
    }


def _train_claimed(dataset: Any, out_dir: str | Path, model_config: Any, transform_kind: str,  # noqa: PLR0913
                   train_config: TrainConfig | None, resume: bool, progress: bool, overwrite: bool, scaling: str,
                   pinning: str, lock: FolderLock | None) -> TrainResult:
    """:func:`train`'s body (same arguments); claims ``out_dir`` with ``lock`` on rank 0 once they are checked."""
    from pyfdc.core.checkpoint import load_checkpoint, update_checkpoint_extra
    from pyfdc.core.sde import VPSDE
    from pyfdc.core.spectral import make_transform

    cfg, train_x = _checked_inputs(dataset, train_config, scaling, pinning)
    world = distributed.current()
    batch = rank_batch(cfg, world)  # this rank's share of a global batch
    n, n_steps_t, m = train_x.shape
    transform = make_transform(transform_kind, n_steps_t, m)
    mcfg = resolve_model_config(model_config, transform.num_tokens, transform.token_dim, transform.m)
    fit_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
    out = Path(out_dir)
    # only after every argument has been checked; rank 0 makes the folder, every rank gets its error
    distributed.on_main(world, lambda: (lock.acquire() if lock is not None else None,
                                        _prepare_out_dir(out, resume, overwrite)))
    t_start = time.perf_counter()
    device = torch.device(cfg.device)
    stats, z_fit, z_val = fit_data_stats(train_x, fit_idx, val_idx, transform, scaling, pinning, device)
    sde = VPSDE()
    parts = build_parts(mcfg, stats, transform, sde, cfg, world, device, len(z_fit))
    job = TrainJob(cfg=cfg, world=world, out=out, meta=_run_meta(dataset, train_x, transform_kind, scaling, pinning,
                                                                 stats, fit_idx, val_idx),
                   mcfg=mcfg, stats=stats, transform=transform, sde=sde, device=device,
                   mask=transform.mask(device=device), z_fit=z_fit, z_val=z_val, batch=batch,
                   steps_per_epoch=steps_per_epoch(parts.shards, len(z_fit), batch), t_start=t_start, resume=resume,
                   val_loss=_val_loss)  # this module's, looked up now (tests replace it)
    run = new_run(cfg)
    if resume:
        resume_run(job, parts, run)
    stopped = run_epochs(job, parts, run, progress)

    final = run_summary(job, run, stopped)
    distributed.on_main(world, lambda: update_checkpoint_extra(
        out, {"training": {**final, "train_config": cfg.to_dict()}}))
    best = load_checkpoint(out)
    return TrainResult(model=best, out_dir=out, epochs_run=run["epoch"],
                       planned_epochs=run["planned_epochs"], best_epoch=run["best_epoch"],
                       best_val_loss=final["best_val_loss"], stopped_by_budget=final["stopped_by_budget"],
                       wall_seconds=run["elapsed"], history=list(run["history"]), kept_epoch=run["kept_epoch"])
