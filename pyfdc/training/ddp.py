"""Training's distributed plumbing under ``torchrun`` (used by :mod:`pyfdc.training.trainer` and :mod:`pyfdc.training.loop`).

In a run of ``world.size`` processes (:mod:`pyfdc.distributed`) each rank takes ``batch_size / size``
series of every global batch from a ``DistributedSampler`` seeded per epoch, draws its diffusion noise
from its own generator (seed ``cfg.seed + 1 + 7919 * rank``), and trains the network wrapped in
DistributedDataParallel. Rank 0's wall clock decides when a budgeted run stops and every rank follows it;
rank 0 alone writes files (:func:`pyfdc.distributed.on_main` re-raises its errors on every rank). In a
single process every helper here reduces to the plain single-process behaviour.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pyfdc import distributed
from pyfdc.training.config import TrainConfig

if TYPE_CHECKING:
    from torch.utils.data import DistributedSampler

__all__ = ["rank_batch", "noise_generator", "wrap_for_world", "steps_per_epoch", "epoch_order",
           "rank_noise_state", "gather_noise_states", "agree_on_budget"]


def rank_batch(cfg: TrainConfig, world: distributed.World) -> int:
    """This rank's share of a global batch of ``cfg.batch_size`` series; an error unless it divides evenly."""
    if cfg.batch_size % world.size:
        raise ValueError(f"TrainConfig.batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                         f"{world.size} processes of this distributed run")
    return cfg.batch_size // world.size


def noise_generator(cfg: TrainConfig, world: distributed.World, device: torch.device) -> torch.Generator:
    """This rank's generator (on ``device``) of diffusion times and noise: every rank draws its own."""
    return torch.Generator(device=device).manual_seed(cfg.seed + 1 + 7_919 * world.rank)


def wrap_for_world(net: nn.Module, n_fit: int, cfg: TrainConfig, world: distributed.World,
                   device: torch.device) -> tuple[nn.Module, DistributedSampler | None]:
    """``(trained, shards)``: the module the loss calls (``net`` itself, or its DistributedDataParallel
    wrapper) and this rank's sampler of the ``n_fit`` fit series (``None`` in a single process)."""
    if not world.active:
        return net, None
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    shards = DistributedSampler(range(n_fit), num_replicas=world.size, rank=world.rank,
                                shuffle=True, seed=cfg.seed, drop_last=False)
    trained: nn.Module = DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)
    return trained, shards


def steps_per_epoch(shards: DistributedSampler | None, n_fit: int, batch: int) -> int:
    """Optimiser steps in one epoch: this rank's series (all ``n_fit`` in one process) in batches of ``batch``."""
    return math.ceil((len(shards) if shards is not None else n_fit) / batch)


def epoch_order(shards: DistributedSampler | None, shuffle_gen: torch.Generator, n_fit: int, epoch: int,
                device: torch.device) -> Tensor:
    """The fit-series indices this rank visits in ``epoch`` (int64 on ``device``): the sampler's share
    (seeded by the epoch) in a distributed run, else a permutation of ``range(n_fit)`` drawn from ``shuffle_gen``."""
    if shards is not None:
        shards.set_epoch(epoch)
        return torch.tensor(list(shards), dtype=torch.int64).to(device)
    return torch.randperm(n_fit, generator=shuffle_gen).to(device)


def rank_noise_state(state: dict[str, Any], world: distributed.World) -> Tensor:
    """This rank's noise-generator state in a saved training state (every rank's is kept)."""
    return state["noise_rng_ranks"][world.rank] if world.active else state["noise_rng"]


def gather_noise_states(world: distributed.World, noise_gen: torch.Generator) -> list[Tensor]:
    """Every rank's noise-generator state, in rank order (what rank 0 saves)."""
    return distributed.all_gather(world, noise_gen.get_state())


def agree_on_budget(world: distributed.World, stopped: bool, run: dict[str, Any]) -> bool:
    """Rank 0's stop decision and schedule (``run``'s planned and warmup epochs, set in place) on every
    rank, so no rank stops alone; returns the decision."""
    if world.active:
        stopped, run["planned_epochs"], run["warmup_epochs"] = distributed.broadcast(
            world, (stopped, run["planned_epochs"], run["warmup_epochs"]))
    return stopped
