"""Training's optimisation loop: epochs of AdamW steps under a warmup + cosine LR, EMA, validation, the
wall-clock budget, the progress bar and the per-epoch checkpoint and resume state (used by :mod:`pyfdc.training.trainer`).

Each epoch visits the fit tokens in a seeded order (:func:`pyfdc.training.ddp.epoch_order`), takes one
optimiser step per batch (diffusion times and noise from the rank's noise generator), then measures the
validation loss of the evaluated network (the EMA when on), appends a history row, re-fits the schedule
to the budget in the first epochs, and on rank 0 writes the checkpoint (when the validation loss improved,
and at the last epoch when ``TrainConfig.keep`` is ``"last"``),
``train_state.pt`` and ``history.json``. Everything random comes from the generators in
:class:`TrainParts`, which the state file holds, so a resumed run continues bit for bit.
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor, nn

from pyfdc import distributed
from pyfdc._io import atomic_write_text
from pyfdc.training.config import TrainConfig, TrainResult, lr_factor
from pyfdc.training.data_stats import TrainDataStats
from pyfdc.training.ddp import (agree_on_budget, epoch_order, gather_noise_states, noise_generator, rank_noise_state,
                             wrap_for_world)
from pyfdc.training.state import (_STATE_FORMAT, HISTORY_FILE, STATE_FILE, _cfg_dict, _check_resume,
                               _fit_schedule_to_budget, _load_state, _save_state)

if TYPE_CHECKING:
    from torch.utils.data import DistributedSampler

    from pyfdc.core.sde import VPSDE
    from pyfdc.core.spectral import TokenTransform

__all__ = ["TrainParts", "TrainJob", "build_parts", "new_run", "resume_run", "run_epochs", "run_summary"]


def _ema_update(ema: nn.Module, net: nn.Module, decay: float, step: int) -> None:
    d = min(decay, (1 + step) / (10 + step))  # short warmup so early EMA is not stuck at init
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.lerp_(p, 1.0 - d)
        for be, b in zip(_state_buffers(ema), _state_buffers(net)):
            be.copy_(b)


def _state_buffers(m: nn.Module) -> list[Tensor]:
    """``m``'s persistent buffers: the non-persistent ones (the token<->time matrices) are derived constants,
    ~N² floats each, not worth a copy every step."""
    return [b for mod in m.modules() for name, b in mod.named_buffers(recurse=False)
            if name not in mod._non_persistent_buffers_set]


@torch.no_grad()
def _val_loss(net: nn.Module, z_val: Tensor, sde: Any, mask: Tensor, cfg: TrainConfig,
              world: Any = None) -> float:
    """Mean DSM loss over ``z_val`` (each rank of a distributed run takes every ``size``-th series)."""
    from pyfdc.core.sde import dsm_loss

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


@dataclass
class TrainParts:
    """What one run optimises and the random streams it draws from (all saved in ``train_state.pt``)."""

    net: nn.Module                         # the score network (its weights are the ones saved)
    trained: nn.Module                     # ``net`` or its DistributedDataParallel wrapper: what the loss calls
    ema: nn.Module | None                  # exponential moving average of ``net`` (``cfg.ema_decay``)
    optimizer: torch.optim.Optimizer       # AdamW over ``net``'s parameters
    shuffle_gen: torch.Generator           # CPU: the epoch orders of a single-process run
    noise_gen: torch.Generator             # on the device, per rank: diffusion times and noise
    shards: DistributedSampler | None      # this rank's share of the fit series (distributed runs only)

    @property
    def eval_net(self) -> nn.Module:
        """The network validated and checkpointed: the EMA when on, else ``net``."""
        return self.ema if self.ema is not None else self.net


@dataclass
class TrainJob:
    """The fixed context of one run: settings, data statistics, tokens and where it writes."""

    cfg: TrainConfig
    world: distributed.World
    out: Path                              # the checkpoint folder
    meta: dict[str, Any]                   # data facts recorded in the checkpoint and checked on resume
    mcfg: Any                              # the network's ModelConfig
    stats: TrainDataStats
    transform: TokenTransform
    sde: VPSDE
    device: torch.device                   # where the network, tokens and noise live
    mask: Tensor                           # (T, C) free token coordinates, on the device
    z_fit: Tensor                          # (n_fit, T, C) fit tokens, float32 on the device
    z_val: Tensor                          # (n_val, T, C) validation tokens (n_val may be 0)
    batch: int                             # this rank's share of a global batch
    steps_per_epoch: int
    t_start: float                         # perf_counter at the start of this session
    resume: bool
    val_loss: Callable[..., float]         # :func:`_val_loss` (looked up by the caller, so tests can replace it)

    @property
    def budget_s(self) -> float | None:
        return None if self.cfg.max_minutes is None else 60.0 * self.cfg.max_minutes

    def model_of(self, module: nn.Module) -> Any:
        """``module`` as a :class:`~pyfdc.core.model.DiffusionModel` with this run's statistics and meta."""
        return self.stats.model(module, self.transform, self.sde, self.meta)


def build_parts(mcfg: Any, stats: TrainDataStats, transform: TokenTransform, sde: VPSDE, cfg: TrainConfig,
                world: distributed.World, device: torch.device, n_fit: int) -> TrainParts:
    """A fresh seeded network (the caller's global RNG untouched), its pins attached, EMA copy, AdamW, the
    generators and the distributed wrapper."""
    from pyfdc.core.model import DiffusionModel
    from pyfdc.core.score_net import ScoreTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = ScoreTransformer(mcfg).to(device)
    DiffusionModel(net, transform, sde, stats.standardizer, token_scaler=stats.token_scaler, pins=stats.pins)  # attaches pins
    ema = copy.deepcopy(net) if cfg.ema_decay is not None else None
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    shuffle_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = noise_generator(cfg, world, device)
    trained, shards = wrap_for_world(net, n_fit, cfg, world, device)
    return TrainParts(net=net, trained=trained, ema=ema, optimizer=optimizer, shuffle_gen=shuffle_gen,
                      noise_gen=noise_gen, shards=shards)


def new_run(cfg: TrainConfig) -> dict[str, Any]:
    """The mutable run state of a fresh run (everything ``train_state.pt`` holds besides module/optimizer states)."""
    return {"epoch": 0, "step": 0, "planned_epochs": cfg.epochs, "warmup_epochs": cfg.warmup_epochs,
            "best_val": math.inf, "best_epoch": 0, "kept_epoch": 0, "history": [], "elapsed": 0.0}


def resume_run(job: TrainJob, parts: TrainParts, run: dict[str, Any]) -> None:
    """Load ``job.out/train_state.pt`` into ``parts`` and ``run`` after checking it is the same run."""
    cfg = job.cfg
    state = _load_state(job.out / STATE_FILE)
    _check_resume(state, cfg, job.meta, job.mcfg, job.world.size)
    parts.net.load_state_dict(state["net"])
    if parts.ema is not None:
        parts.ema.load_state_dict(state["ema"])
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.shuffle_gen.set_state(state["shuffle_rng"])
    parts.noise_gen.set_state(rank_noise_state(state, job.world))
    run.update(state["run"])
    if "kept_epoch" not in state["run"]:   # states written before TrainConfig.keep kept the best epoch
        run["kept_epoch"] = run["best_epoch"]
    if cfg.epochs != state["config"]["epochs"]:  # user extended/shortened the run
        run["planned_epochs"] = cfg.epochs


def run_summary(job: TrainJob, run: dict[str, Any], stopped: bool) -> dict[str, Any]:
    """:meth:`TrainResult.summary` of the run so far (a budgeted run short of ``cfg.epochs`` counts as stopped)."""
    stopped = stopped or (job.budget_s is not None and run["epoch"] < job.cfg.epochs)
    return TrainResult(
        model=None, out_dir=job.out, epochs_run=run["epoch"], planned_epochs=run["planned_epochs"],
        best_epoch=run["best_epoch"],
        best_val_loss=None if math.isinf(run["best_val"]) else run["best_val"],
        stopped_by_budget=stopped, wall_seconds=run["elapsed"], history=run["history"],
        kept_epoch=run.get("kept_epoch", run["best_epoch"]),
    ).summary()


def _train_epoch(job: TrainJob, parts: TrainParts, run: dict[str, Any], bar: Any) -> tuple[float, float]:
    """One epoch's optimiser steps; returns ``(train loss, last lr)`` (the loss averaged over every rank's series)."""
    from pyfdc.core.sde import dsm_loss

    cfg, net = job.cfg, parts.net
    perm = epoch_order(parts.shards, parts.shuffle_gen, len(job.z_fit), run["epoch"], job.device)
    loss_sum = 0.0
    for start in range(0, len(perm), job.batch):
        total = run["planned_epochs"] * job.steps_per_epoch
        warm = run["warmup_epochs"] * job.steps_per_epoch
        lr = cfg.lr * lr_factor(run["step"], warm, total)
        for group in parts.optimizer.param_groups:
            group["lr"] = lr
        zb = job.z_fit[perm[start:start + job.batch]]
        loss = dsm_loss(parts.trained, zb, job.sde, job.mask, generator=parts.noise_gen,
                        small_t_fraction=cfg.small_t_fraction)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {float(loss.detach())} at epoch {run['epoch'] + 1}, "
                f"step {run['step']}; try a lower lr (now {cfg.lr}; CLI --lr)")
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        parts.optimizer.step()
        if parts.ema is not None:
            _ema_update(parts.ema, net, cfg.ema_decay, run["step"])
        run["step"] += 1
        loss_sum += float(loss.detach()) * len(zb)
        bar.update(1)
        bar.set_postfix(epoch=run["epoch"] + 1, loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
    run["epoch"] += 1
    loss_sum, seen = distributed.all_sum(job.world, [loss_sum, float(len(perm))])
    return loss_sum / seen, lr


def _save_epoch(job: TrainJob, parts: TrainParts, run: dict[str, Any], write: bool, stopped: bool) -> None:
    """Rank 0 writes the checkpoint (when ``write``: a better validation loss, or the last epoch of a run that
    keeps the last), ``train_state.pt`` and ``history.json``; every rank contributes its noise-generator state."""
    from pyfdc.core.checkpoint import save_checkpoint

    cfg = job.cfg
    noise_states = gather_noise_states(job.world, parts.noise_gen)
    if not job.world.is_main:
        return
    if write:
        save_checkpoint(job.out, job.model_of(parts.eval_net),
                        {"training": {**run_summary(job, run, stopped), "train_config": cfg.to_dict()}})
    _save_state(job.out / STATE_FILE, {
        "format": _STATE_FORMAT, "config": cfg.to_dict(), "model_config": _cfg_dict(job.mcfg),
        "meta": job.meta, "net": parts.net.state_dict(),
        "ema": parts.ema.state_dict() if parts.ema is not None else None,
        "optimizer": parts.optimizer.state_dict(), "shuffle_rng": parts.shuffle_gen.get_state(),
        "noise_rng": parts.noise_gen.get_state(), "run": copy.deepcopy(run),
        "world_size": job.world.size, "noise_rng_ranks": noise_states,
    })
    atomic_write_text(job.out / HISTORY_FILE, json.dumps(run["history"], indent=1))


@dataclass
class _Clock:
    """Wall-clock bookkeeping of this session: ``run["elapsed"]`` at its start, the end of each epoch
    (before saving) and how long the last save took."""

    elapsed0: float
    marks: list[float] = field(default_factory=list)
    save_s: float = 0.0


def _epoch(job: TrainJob, parts: TrainParts, run: dict[str, Any], bar: Any, clock: _Clock) -> bool:
    """Train, validate, record and save one epoch; returns whether the budget stops the run after it."""
    cfg, world, budget_s, stopped = job.cfg, job.world, job.budget_s, False
    epoch_t0 = time.perf_counter()
    train_loss, lr = _train_epoch(job, parts, run, bar)
    val = job.val_loss(parts.eval_net, job.z_val, job.sde, job.mask, cfg, world) if len(job.z_val) else train_loss
    improved = val < run["best_val"] or not len(job.z_val)  # no val split: keep the last
    if improved:
        run["best_val"], run["best_epoch"] = val, run["epoch"]
    epoch_s = time.perf_counter() - epoch_t0
    run["elapsed"] = clock.elapsed0 + time.perf_counter() - job.t_start
    run["history"].append({"epoch": run["epoch"], "train_loss": train_loss,
                           "val_loss": val, "lr": lr, "seconds": round(epoch_s, 3)})
    bar.set_postfix(epoch=run["epoch"], loss=f"{train_loss:.4f}", val=f"{val:.4f}")
    clock.marks.append(time.perf_counter())
    if budget_s is not None and not job.resume:
        _fit_schedule_to_budget(run, cfg, budget_s, clock.marks, job.t_start)
        bar.total = run["planned_epochs"] * job.steps_per_epoch
        bar.refresh()
    if budget_s is not None and run["epoch"] < run["planned_epochs"]:
        # stop if the next epoch (timed like this one, saves included) would overrun
        stopped = time.perf_counter() - job.t_start + epoch_s + clock.save_s > budget_s
    if budget_s is not None:  # rank 0's clock decides for every rank
        stopped = agree_on_budget(world, stopped, run)
    last = stopped or run["epoch"] >= run["planned_epochs"]
    write = improved or (cfg.keep == "last" and last)
    if write:
        run["kept_epoch"] = run["epoch"]
    _save_epoch(job, parts, run, write, stopped)
    clock.save_s = time.perf_counter() - clock.marks[-1]
    return stopped


def run_epochs(job: TrainJob, parts: TrainParts, run: dict[str, Any], progress: bool) -> bool:
    """Train until ``run["planned_epochs"]`` or the budget; returns whether the budget stopped the run.

    A non-finite loss raises :class:`FloatingPointError`; a fresh run that had committed no checkpoint
    then leaves no resume state or history behind.
    """
    from tqdm.auto import tqdm

    clock = _Clock(elapsed0=run["elapsed"])
    stopped = False
    bar = tqdm(total=run["planned_epochs"] * job.steps_per_epoch, initial=run["step"],
               disable=not (progress and job.world.is_main), desc="train", unit="step", dynamic_ncols=True)
    parts.net.train()
    try:
        while run["epoch"] < run["planned_epochs"]:
            stopped = _epoch(job, parts, run, bar, clock)
            if stopped:
                break
    except FloatingPointError:
        out = job.out
        if not job.resume and not (out / "config.json").is_file():  # nothing usable was written: leave no state behind
            distributed.on_main(job.world,
                                lambda: [(out / f).unlink(missing_ok=True) for f in (STATE_FILE, HISTORY_FILE)])
        raise
    finally:
        bar.close()
    return stopped
