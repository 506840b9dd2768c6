"""One run on several processes: data-parallel SVI on ``torch.distributed``.

Launched by torchrun (``torchrun --nproc_per_node=N -m inference.train ...``, its rendezvous
for several machines) or by SLURM (``srun``, or Hydra's submitit launcher with
``hydra.launcher.tasks_per_node``), where the rank and world size come from SLURM's variables
through submitit's helper. Each process (a rank) holds the whole model and guide and takes its
share of every batch; the gradients of the batch's summed negative ELBO are summed across the
ranks every step, so that each step is the one-process step on the whole batch, up to the Monte
Carlo noise, which each rank draws from a stream of its own.

Every rank's randomness is set at the start of each epoch: the epoch's permutation of the
training points from a stream all ranks share, (seed, epoch), and the rank's Monte Carlo draws
from (seed, epoch, rank). A run resumed from a checkpoint (written at an epoch's end) with the
same world size therefore continues exactly.
"""

import datetime
import logging
import os
from dataclasses import dataclass

import numpy as np
import pyro
import torch
import torch.distributed as dist

__all__ = ["World", "ended", "launched_world", "started"]

log = logging.getLogger(__name__)


def launched_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process as its launcher set them: torchrun's
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; SLURM's tasks (``SLURM_NTASKS`` > 1), whose
    rendezvous address submitit's helper exports; (0, 1, 0) for a process launched alone."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if int(os.environ.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in os.environ:
        from submitit.helpers import TorchDistributedEnvironment

        env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False)  # MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
        return env.rank, env.world_size, env.local_rank
    return 0, 1, 0


def _derived(*numbers: int) -> int:
    """A seed from several numbers, the same in every process (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class World:
    """This process's place in a run on several processes (ranks)."""

    rank: int
    size: int
    device: torch.device  #: this rank's: its own GPU (``LOCAL_RANK``), or the CPU the ranks share
    seed: int  #: the run's train.seed, from which every rank's streams are derived

    @property
    def leader(self) -> bool:
        """Rank 0: the one that writes the run directory (checkpoints, metrics, figures, trackers)."""
        return self.rank == 0

    def epoch_streams(self, epoch: int) -> torch.Generator:
        """Seed this rank's Monte Carlo draws for ``epoch`` from (seed, epoch, rank) and return
        the epoch's permutation stream, (seed, epoch), the same on every rank."""
        pyro.set_rng_seed(_derived(self.seed, epoch, self.rank + 1) % 2**32)
        return torch.Generator().manual_seed(_derived(self.seed, epoch, 0))

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's points of a batch (its indices): every ``size``-th from ``rank``, so that
        the labelled points a batch ends with (``data.labeled_per_batch``) are shared out too."""
        return batch[self.rank :: self.size]

    def summed(self, parameters: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        """Sum each parameter's gradient and the loss over the ranks (one all-reduce, the
        parameters in the optimizer's order, which every rank builds alike), in place; returns
        the batch's loss. A parameter without a gradient takes part as zeros and gets them."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([*(g.reshape(-1) for g in grads), loss.reshape(1).to(grads[0].dtype)])
        dist.all_reduce(flat)
        offset = 0
        for p in parameters:
            p.grad = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        return flat[-1].to(loss.dtype)

    def same_parameters(self, parameters: list[torch.Tensor]) -> None:
        """Every rank starts from rank 0's parameters."""
        with torch.no_grad():
            for p in parameters:
                dist.broadcast(p.data, 0)

    def shard(self, n: int, multiple: int = 1) -> slice:
        """This rank's consecutive share of ``n`` points, its bounds multiples of ``multiple``
        (an estimator's seed groups), the shares as even as that allows."""
        groups = -(-n // multiple)
        start, stop = (groups * r // self.size * multiple for r in (self.rank, self.rank + 1))
        return slice(min(start, n), min(stop, n))

    def gathered(self, value) -> list:
        """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
        values = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def agreed(self, value):
        """Rank 0's ``value`` (any picklable object), on every rank."""
        box = [value]
        dist.broadcast_object_list(box, 0)
        return box[0]


def started(setting: bool | str, timeout_s: float, device: torch.device, seed: int) -> World | None:
    """Join the run's process group where it has several processes (``train.distributed``:
    ``auto`` where launched so, ``true`` insists, ``false`` refuses); None for a one-process
    run, but for ``true`` under torchrun with one process (the distributed path on one device,
    to measure what it costs). Each rank on its own GPU (``LOCAL_RANK``) with NCCL, or on the CPU with gloo; a
    collective that waits on a rank longer than ``timeout_s`` fails, so that a rank that died
    ends the run on every rank."""
    rank, size, local_rank = launched_world()
    if size == 1:
        if setting is True and "WORLD_SIZE" not in os.environ:
            raise ValueError("train.distributed=true, but the run was launched as one process: launch it with torchrun --nproc_per_node=N -m inference.train ...")
        if setting is not True:
            return None
    if setting is False:
        raise ValueError(f"train.distributed=false, but the run was launched as {size} processes; launch one (python -m inference.train), or set train.distributed=auto")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info(f"rank {rank} of {size} ({dist.get_backend()}) on {device}")
    return World(rank, size, device, seed)


def ended(world: World | None) -> None:
    """Leave the process group (after the last collective of this rank)."""
    if world is not None and dist.is_initialized():
        dist.destroy_process_group()
