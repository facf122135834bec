"""torch.distributed plumbing: join the process group torchrun describes, and the few collectives pyfdc uses.

pyfdc never launches processes. ``torchrun --nproc_per_node=N -m pyfdc train|sample ...`` starts them and
sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT``; :func:`join` reads those and
initialises the default group (gloo on CPU, nccl on CUDA). Without them the world has one process, no
group is created and every helper here is a no-op on its argument, so single-process code pays nothing.

Errors are agreed: :func:`on_main` runs a side effect (creating an output folder, writing a file) on rank 0
only and re-raises its exception on every rank, so no rank waits in a collective for a rank that failed.
"""
from __future__ import annotations

import faulthandler
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, NoReturn, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` (``local_rank`` on its node)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process: collectives really communicate."""
        return self.size > 1

    @property
    def device(self) -> torch.device:
        """Where collective tensors must live (nccl: this rank's GPU; gloo: CPU)."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


def _env_int(name: str) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={value} must be >= 0")
    return value


def launched_size() -> int:
    """``WORLD_SIZE`` set by the launcher, 1 when started without one."""
    return 1 if os.environ.get("WORLD_SIZE") in (None, "") else _env_int("WORLD_SIZE")


def join(device: str | torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[World, torch.device]:
    """Join the job torchrun started (if any); returns the world and this rank's device.

    ``device="cuda"`` (no index) becomes ``cuda:LOCAL_RANK`` in a multi-process job, so each process of a
    node drives its own GPU; an explicit index is kept. CPU jobs use gloo, CUDA jobs nccl.
    """
    from pyfdc._device import check_device

    size = launched_size()
    if size <= 1:
        return World(), check_device(device)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank >= size:
        raise ValueError(f"RANK={rank} is not below WORLD_SIZE={size}")
    dev = check_device(device)
    if dev.type == "cuda":
        if dev.index is None:
            dev = check_device(f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not faulthandler.is_enabled():  # a rank killed by a signal (SIGABRT in a C++ teardown) says where it was
        try:
            faulthandler.enable()
        except (OSError, ValueError, AttributeError):  # stderr without a file descriptor: go on without it
            pass
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
        if dev.type == "cuda":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    return World(rank=rank, size=size, local_rank=local_rank, backend=backend), dev


def current() -> World:
    """The world of an already initialised default group (e.g. by :func:`join`), else one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=dist.get_backend())


def leave(world: World) -> None:
    """Tear the default group down (end of a command)."""
    if world.active and dist.is_initialized():
        dist.destroy_process_group()


def exit_now(code: int) -> NoReturn:
    """End this process with ``code`` at once (stdout and stderr flushed), skipping interpreter finalization.

    What a torchrun rank does after its command: gloo's worker threads release the last collectives' tensors
    after the collective has returned, and one that needs the GIL while the interpreter is finalizing ends
    the process with SIGABRT ("terminate called without an active exception"; a core dump here showed
    ``ProcessGroupGloo::runLoop`` destroying a barrier's work during ``Py_FinalizeEx``), after all output
    was written — torchrun then reports the job failed. Everything pyfdc writes is committed before this.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed or replaced streams: nothing left to flush
            pass
    os._exit(code)


def broadcast(world: World, obj: T) -> T:
    """Rank 0's ``obj`` on every rank (any picklable value)."""
    if not world.active:
        return obj
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0, device=world.device)
    return box[0]  # type: ignore[return-value]


def all_gather(world: World, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not world.active:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def all_sum(world: World, values: list[float]) -> list[float]:
    """Element-wise sums over ranks (float64)."""
    if not world.active:
        return list(values)
    return all_reduce_(world, torch.tensor(values, dtype=torch.float64), "sum").tolist()


def all_max(world: World, values: list[float]) -> list[float]:
    """Element-wise maxima over ranks (float64)."""
    if not world.active:
        return list(values)
    return all_reduce_(world, torch.tensor(values, dtype=torch.float64), "max").tolist()


def all_reduce_(world: World, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place reduction of ``tensor`` over ranks (``op`` ``"sum"`` or ``"max"``); returns it."""
    if world.active:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        if op not in ops:
            raise ValueError(f"op must be one of {sorted(ops)}, got {op!r}")
        buf = tensor.to(world.device)
        dist.all_reduce(buf, op=ops[op])
        if buf is not tensor:
            tensor.copy_(buf)
    return tensor


def barrier(world: World) -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if world.active:
        dist.barrier()


def on_main(world: World, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give every rank its result, or raise its exception on every rank."""
    if not world.active:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if world.is_main:
        try:
            outcome = (True, fn())
        except Exception as exc:  # handed to every rank, re-raised below
            outcome = (False, exc)
    try:
        ok, value = broadcast(world, outcome)
    except Exception:  # an unpicklable result or exception: fall back to its message
        ok, value = broadcast(world, (outcome[0], outcome[1] if outcome[0] else RuntimeError(str(outcome[1]))))
    if not ok:
        raise value
    return value


def shard(n: int, world: World) -> tuple[int, int]:
    """This rank's contiguous block ``[start, stop)`` of ``n`` items; block sizes differ by at most one."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return start, start + base + (1 if world.rank < extra else 0)
