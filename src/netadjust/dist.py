"""The distributed environment, read once from what ``torchrun`` sets.

A single process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) needs no process group. Under
``torchrun`` the group is created with NCCL on CUDA and gloo on CPU, with a timeout on
collectives so a rank that dies makes the others fail instead of hanging forever.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_env() -> DistEnv:
    """The environment torchrun describes (a single process when run plainly)."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device, timeout_s: float = 600.0) -> DistEnv:
    """Join the process group if torchrun started several processes; returns the environment."""
    env = dist_env()
    if env.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return env


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers across ranks (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s object on every rank (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s buffers (BatchNorm running statistics), in place.

    DDP sends rank 0's buffers before each forward pass, so after the last one every rank holds
    statistics of its own shard; rank 0 is the one whose state is saved (and resumed from).
    """
    if dist.is_available() and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src)


def all_gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    """Leave the process group (if any) once every rank got here."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_worker(code: int) -> NoReturn:
    """End this torchrun worker with ``code``: flush its output, then exit without the
    interpreter's teardown.

    A normal exit can abort the process ("terminate called without an active exception",
    exit -6, which torchrun reports as a failed run). DDP keeps its process group alive after
    ``destroy_process_group`` (torch 2.13), so gloo's worker threads outlive it; one that is
    still releasing a finished collective's tensors must take the GIL, and if the interpreter
    is finalizing by then the thread is killed inside C++ code. That depends on thread timing
    (``bench/bench_worker_exit.py``); with no teardown there is nothing to race with. Files must
    be closed before this is called.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed stream or a reader that went away
            pass
    logging.shutdown()
    os._exit(code)


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks this rank's CUDA device when there is one, else the CPU; a device that
    this machine does not have is a :class:`ConfigError` (before anything is written)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", dist_env().local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "no GPU is visible" if torch.backends.cuda.is_built() else f"torch {torch.__version__} has no CUDA"
            raise ConfigError(f"--device {name}: CUDA is not available here ({why}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        if device.index is None:
            device = torch.device("cuda", dist_env().local_rank % count)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: Apple's MPS is not available here; use --device cpu or auto")
    return device
