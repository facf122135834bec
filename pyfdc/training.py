"""Training loop for the score network: AdamW, warmup + cosine LR, best-validation checkpoint.

``train`` fits a :class:`~pyfdc.model.DiffusionModel` on a
:class:`~pyfdc.data.TimeSeriesDataset`. Only the dataset's *train* part is touched: a seeded
validation split is carved out of it for model selection, and the standardizer is fitted on the
remaining (fit) part. The dataset's test split is held out for evaluation and never read here.

Output folder (a checkpoint directory, see :mod:`pyfdc.checkpoint`)::

    model.safetensors + config.json   best-validation model (EMA weights when EMA is on)
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
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pyfdc._io import atomic_write_text
from pyfdc.outdir import FolderLock
from pyfdc.train_config import TrainConfig, TrainResult, lr_factor, resolve_model_config, split_indices
from pyfdc.train_state import (_STATE_FORMAT, HISTORY_FILE, STATE_FILE, _cfg_dict, _check_resume,
                               _fit_schedule_to_budget, _load_state, _prepare_out_dir, _save_state)

__all__ = ["TrainConfig", "TrainResult", "train", "resolve_model_config", "lr_factor", "split_indices",
           "STATE_FILE", "HISTORY_FILE"]


def _fingerprint(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16]


def _ema_update(ema: nn.Module, net: nn.Module, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))  # short warmup so early EMA is not stuck at init
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.lerp_(p, 1.0 - d)
        for be, b in zip(ema.buffers(), net.buffers()):
            be.copy_(b)


@torch.no_grad()
def _val_loss(net: nn.Module, z_val: Tensor, sde: Any, mask: Tensor, cfg: TrainConfig,
              world: Any = None) -> float:
    """Mean DSM loss over ``z_val`` (each rank of a distributed run takes every ``size``-th series)."""
    from pyfdc import distributed
    from pyfdc.sde import dsm_loss

    world = world or distributed.World()
    z_val = z_val[world.rank::world.size]
    net.eval()
    gen = torch.Generator(device=z_val.device).manual_seed(cfg.seed + 1_000_003 + 7_919 * world.rank)
    total, count = 0.0, 0
    for _ in range(cfg.val_repeats):
        for start in range(0, len(z_val), cfg.batch_size):
            zb = z_val[start:start + cfg.batch_size]
            total += float(dsm_loss(net, zb, sde, mask, generator=gen)) * len(zb)
            count += len(zb)
    net.train()
    total, count = distributed.all_sum(world, [total, float(count)])
    return total / count


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
            standardise every token coordinate after the transform; see :mod:`pyfdc.token_scaler`).
        pinning: ``"auto"`` pins coordinates that are constant over the fit split (exact noise
            prediction there, values restored on decoding; :mod:`pyfdc.pinning`), ``"off"`` does
            not. Only with ``scaling="channel"``.

    Returns:
        :class:`TrainResult` whose ``model`` is the best-validation (EMA when enabled) model.
    """
    lock = FolderLock(out_dir, "pyfdc train")  # held for the whole run: a second run into out_dir fails at once
    try:
        return _train_claimed(dataset, out_dir, model_config, transform_kind, train_config, resume, progress,
                              overwrite, scaling, pinning, lock)
    finally:
        lock.release()


def _train_claimed(dataset: Any, out_dir: str | Path, model_config: Any, transform_kind: str,  # noqa: PLR0913
                   train_config: TrainConfig | None, resume: bool, progress: bool, overwrite: bool, scaling: str,
                   pinning: str, lock: FolderLock | None) -> TrainResult:
    """:func:`train`'s body (same arguments); claims ``out_dir`` with ``lock`` on rank 0 once they are checked."""
    from tqdm.auto import tqdm

    from pyfdc import distributed
    from pyfdc.checkpoint import save_checkpoint
    from pyfdc.data import Standardizer
    from pyfdc.model import DiffusionModel
    from pyfdc.score_net import ScoreTransformer
    from pyfdc.sde import VPSDE, dsm_loss
    from pyfdc.spectral import make_transform

    cfg = train_config if train_config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig, got {type(cfg).__name__}")
    if not hasattr(dataset, "train"):
        raise TypeError(f"dataset must be a TimeSeriesDataset (e.g. pyfdc.load_series(FILE)), got {type(dataset).__name__}")
    train_x = np.asarray(dataset.train)
    _check_trainable(train_x)
    from pyfdc.token_moments import TokenMoments
    from pyfdc.token_scaler import SCALINGS, TokenScaler

    from pyfdc.pinning import PINNING, PinnedCoordinates
    from pyfdc.support import SupportBounds

    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    if pinning not in PINNING:
        raise ValueError(f"pinning must be one of {PINNING}, got {pinning!r}")
    world = distributed.current()
    if cfg.batch_size % world.size:
        raise ValueError(f"TrainConfig.batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                         f"{world.size} processes of this distributed run")
    n, n_steps_t, m = train_x.shape
    transform = make_transform(transform_kind, n_steps_t, m)
    mcfg = resolve_model_config(model_config, transform.num_tokens, transform.token_dim)
    fit_idx, val_idx = split_indices(n, cfg.val_fraction, cfg.seed)
    out = Path(out_dir)
    # only after every argument has been checked; rank 0 makes the folder, every rank gets its error
    distributed.on_main(world, lambda: (lock.acquire() if lock is not None else None,
                                        _prepare_out_dir(out, resume, overwrite)))
    t_start = time.perf_counter()
    device = torch.device(cfg.device)
    standardizer = Standardizer.fit(train_x[fit_idx])
    bounds = SupportBounds.fit(train_x[fit_idx])  # the range samplers keep (pyfdc.support)
    sde = VPSDE()
    mask = transform.mask(device=device)

    pins = (PinnedCoordinates.fit(standardizer.transform(train_x[fit_idx]), original=train_x[fit_idx])
            if pinning == "auto" and scaling == "channel" else None)

    # Mirrors DiffusionModel.data_to_tokens, but standardises in the data's own dtype first (as the
    # shipped checkpoint was trained): going through data_to_tokens in float64 moves the tokens by
    # ~6e-7 and so loses bit-reproducibility of earlier runs.
    def raw_tokens(idx: np.ndarray) -> Tensor:
        x = torch.as_tensor(standardizer.transform(train_x[idx]), dtype=torch.float64)
        if pins is not None:
            x = pins.remove(x)
        return transform.to_tokens(x) * transform.mask(dtype=torch.float64)

    # fitted on the fit split only, like the standardizer (validation stays unseen)
    token_scaler = TokenScaler.fit(raw_tokens(fit_idx), transform.mask()) if scaling == "token" else None

    def tokens(idx: np.ndarray) -> Tensor:
        if len(idx) == 0:  # no validation split (val_fraction 0): an empty token batch, no FFT of nothing
            return torch.zeros((0, transform.num_tokens, transform.token_dim), device=device)
        z = raw_tokens(idx)
        if token_scaler is not None:
            z = token_scaler.transform(z)
        return z.to(device=device, dtype=torch.float32) * mask

    z_fit, z_val = tokens(fit_idx), tokens(val_idx)
    token_moments = TokenMoments.fit(z_fit)  # for E2-CRF's gaussian cached output (pyfdc.token_moments)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = ScoreTransformer(mcfg).to(device)
    DiffusionModel(net, transform, sde, standardizer, token_scaler=token_scaler, pins=pins)  # attaches pins
    ema = copy.deepcopy(net) if cfg.ema_decay is not None else None
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + 7_919 * world.rank)
    batch = cfg.batch_size // world.size  # this rank's share of a global batch
    shards = None
    if world.active:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data import DistributedSampler

        shards = DistributedSampler(range(len(z_fit)), num_replicas=world.size, rank=world.rank,
                                    shuffle=True, seed=cfg.seed, drop_last=False)
        trained: nn.Module = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    else:
        trained = net
    steps_per_epoch = math.ceil((len(shards) if shards is not None else len(z_fit)) / batch)
    meta = {
        "dataset": getattr(dataset, "name", None),
        "data_file": (getattr(dataset, "meta", None) or {}).get("source") == "file" and dict(dataset.meta) or None,
        "transform_kind": transform_kind,
        "scaling": scaling,
        "pinning": pinning,
        "pinned": 0 if pins is None else pins.count,
        "train_fingerprint": _fingerprint(train_x),
        "n_fit": int(len(fit_idx)),
        "n_val": int(len(val_idx)),
    }

    # Mutable run state (everything train_state.pt holds besides module/optimizer states).
    run: dict[str, Any] = {
        "epoch": 0, "step": 0, "planned_epochs": cfg.epochs, "warmup_epochs": cfg.warmup_epochs,
        "best_val": math.inf, "best_epoch": 0, "history": [], "elapsed": 0.0,
    }
    if resume:
        state = _load_state(out / STATE_FILE)
        _check_resume(state, cfg, meta, mcfg, world.size)
        net.load_state_dict(state["net"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        shuffle_gen.set_state(state["shuffle_rng"])
        noise_gen.set_state(state["noise_rng_ranks"][world.rank] if world.active else state["noise_rng"])
        run.update(state["run"])
        if cfg.epochs != state["config"]["epochs"]:  # user extended/shortened the run
            run["planned_epochs"] = cfg.epochs

    eval_net = ema if ema is not None else net

    def model_of(module: nn.Module) -> Any:
        return DiffusionModel(module, transform, sde, standardizer, meta=dict(meta), token_scaler=token_scaler,
                              pins=pins, bounds=bounds, token_moments=token_moments)

    def summary(stopped: bool) -> dict[str, Any]:
        stopped = stopped or (budget_s is not None and run["epoch"] < cfg.epochs)
        return TrainResult(
            model=None, out_dir=out, epochs_run=run["epoch"], planned_epochs=run["planned_epochs"],
            best_epoch=run["best_epoch"],
            best_val_loss=None if math.isinf(run["best_val"]) else run["best_val"],
            stopped_by_budget=stopped, wall_seconds=run["elapsed"], history=run["history"],
        ).summary()

    budget_s = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
    elapsed0 = run["elapsed"]
    stopped = False
    marks: list[float] = []  # wall clock at the end of each epoch of this session (before saving)
    save_s = 0.0
    bar = tqdm(total=run["planned_epochs"] * steps_per_epoch, initial=run["step"],
               disable=not (progress and world.is_main), desc="train", unit="step", dynamic_ncols=True)
    net.train()
    try:
        while run["epoch"] < run["planned_epochs"]:
            epoch_t0 = time.perf_counter()
            if shards is not None:
                shards.set_epoch(run["epoch"])
                perm = torch.tensor(list(shards), dtype=torch.int64).to(device)
            else:
                perm = torch.randperm(len(z_fit), generator=shuffle_gen).to(device)
            loss_sum = 0.0
            for start in range(0, len(perm), batch):
                total = run["planned_epochs"] * steps_per_epoch
                warm = run["warmup_epochs"] * steps_per_epoch
                lr = cfg.lr * lr_factor(run["step"], warm, total)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                zb = z_fit[perm[start:start + batch]]
                loss = dsm_loss(trained, zb, sde, mask, generator=noise_gen, small_t_fraction=cfg.small_t_fraction)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss became {float(loss.detach())} at epoch {run['epoch'] + 1}, "
                        f"step {run['step']}; try a lower lr (now {cfg.lr}; CLI --lr)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                optimizer.step()
                if ema is not None:
                    _ema_update(ema, net, cfg.ema_decay, run["step"])
                run["step"] += 1
                loss_sum += float(loss.detach()) * len(zb)
                bar.update(1)
                bar.set_postfix(epoch=run["epoch"] + 1, loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
            run["epoch"] += 1
            loss_sum, seen = distributed.all_sum(world, [loss_sum, float(len(perm))])
            train_loss = loss_sum / seen
            val = _val_loss(eval_net, z_val, sde, mask, cfg, world) if len(z_val) else train_loss
            improved = val < run["best_val"] or not len(z_val)  # no val split: keep the last
            if improved:
                run["best_val"], run["best_epoch"] = val, run["epoch"]
            epoch_s = time.perf_counter() - epoch_t0
            run["elapsed"] = elapsed0 + time.perf_counter() - t_start
            run["history"].append({"epoch": run["epoch"], "train_loss": train_loss,
                                   "val_loss": val, "lr": lr, "seconds": round(epoch_s, 3)})
            bar.set_postfix(epoch=run["epoch"], loss=f"{train_loss:.4f}", val=f"{val:.4f}")
            marks.append(time.perf_counter())
            if budget_s is not None and not resume and run["epoch"] <= 3:
                _fit_schedule_to_budget(run, cfg, budget_s, marks, t_start)
                bar.total = run["planned_epochs"] * steps_per_epoch
                bar.refresh()
            if budget_s is not None and run["epoch"] < run["planned_epochs"]:
                # stop if the next epoch (timed like this one, saves included) would overrun
                stopped = time.perf_counter() - t_start + epoch_s + save_s > budget_s
            if budget_s is not None and world.active:  # rank 0's clock decides for every rank
                stopped, run["planned_epochs"], run["warmup_epochs"] = distributed.broadcast(
                    world, (stopped, run["planned_epochs"], run["warmup_epochs"]))
            noise_states = distributed.all_gather(world, noise_gen.get_state())
            if world.is_main:
                if improved:
                    save_checkpoint(out, model_of(eval_net),
                                    {"training": {**summary(stopped), "train_config": cfg.to_dict()}})
                _save_state(out / STATE_FILE, {
                    "format": _STATE_FORMAT, "config": cfg.to_dict(), "model_config": _cfg_dict(mcfg),
                    "meta": meta, "net": net.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "optimizer": optimizer.state_dict(), "shuffle_rng": shuffle_gen.get_state(),
                    "noise_rng": noise_gen.get_state(), "run": copy.deepcopy(run),
                    "world_size": world.size, "noise_rng_ranks": noise_states,
                })
                atomic_write_text(out / HISTORY_FILE, json.dumps(run["history"], indent=1))
            save_s = time.perf_counter() - marks[-1]
            if stopped:
                break
    except FloatingPointError:
        if not resume and not (out / "config.json").is_file():  # nothing usable was written: leave no state behind
            distributed.on_main(world, lambda: [(out / f).unlink(missing_ok=True) for f in (STATE_FILE, HISTORY_FILE)])
        raise
    finally:
        bar.close()

    from pyfdc.checkpoint import load_checkpoint, update_checkpoint_extra

    final = summary(stopped)
    distributed.on_main(world, lambda: update_checkpoint_extra(
        out, {"training": {**final, "train_config": cfg.to_dict()}}))
    best = load_checkpoint(out)
    return TrainResult(model=best, out_dir=out, epochs_run=run["epoch"],
                       planned_epochs=run["planned_epochs"], best_epoch=run["best_epoch"],
                       best_val_loss=final["best_val_loss"], stopped_by_budget=final["stopped_by_budget"],
                       wall_seconds=run["elapsed"], history=list(run["history"]))
