"""Data-parallel training of one run over several processes (``torch.distributed``, launched by torchrun).

    torchrun --standalone --nproc_per_node 2 -m benchmark run --expid DCN_tiny            # CPU, gloo
    torchrun --standalone --nproc_per_node 4 -m benchmark run --expid DCN_default --gpu 0  # GPUs, nccl

Every rank loads the same data and draws the same seeded batch order; each global batch of
``batch_size`` rows is cut into ``world_size`` contiguous shards and rank r trains on shard r. The
model is wrapped in ``DistributedDataParallel``, whose all-reduce averages the gradients over ranks;
each rank's loss is weighted by ``world_size * n_local / n_global`` first, so the averaged gradient
is the gradient of the global batch's mean loss, as in one process with the same ``batch_size``
(equal up to floating-point summation order). Evaluation predicts one shard per rank and gathers
predictions, labels and group ids on every rank, so all ranks compute the same metrics and make
the same early-stopping decisions. Rank 0 alone writes checkpoints, logs to the console and
appends the run record. With ``--gpu N`` rank r uses CUDA device ``N + LOCAL_RANK`` and nccl;
otherwise gloo on CPU. BatchNorm becomes SyncBatchNorm on CUDA; on CPU each rank normalises
its own shard (the one known difference from a single process), and dropout masks differ per rank.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from .errors import CTRBenchError


@dataclass
class DistContext:
    """Where this process stands in a data-parallel group (world_size 1 = a plain run), and the few
    collective operations the trainer needs; every one is a no-op in a plain run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ---- the loader side: what one rank sees of a batch ----------------------------------------
    def shard(self, batch: dict, train: bool = True) -> tuple[dict, float, int]:
        """(this rank's rows, loss weight, global rows). A rank left without rows in a tiny last batch
        trains on one row with weight 0, so every rank still joins the gradient all-reduce."""
        n = len(next(iter(batch.values())))
        if not self.enabled:
            return batch, 1.0, n
        lo, hi = shard_bounds(n, self.rank, self.world_size)
        if hi == lo and train:
            return {k: v[:1] for k, v in batch.items()}, 0.0, n
        return {k: v[lo:hi] for k, v in batch.items()}, self.world_size * (hi - lo) / n, n

    def train_batches(self, batches):
        """``(shard, loss weight, global rows)`` of each batch of an iterable of training batches."""
        for batch in batches:
            yield self.shard(batch, train=True)

    def eval_batches(self, batches):
        """This rank's rows of each evaluation batch (ranks with no rows skip it)."""
        for batch in batches:
            shard, _, _ = self.shard(batch, train=False)
            if len(next(iter(shard.values()))):
                yield shard

    # ---- the step side: the model and the collectives -----------------------------------------
    def wrap(self, model, find_unused_parameters: bool = True):
        """The module the training step calls: ``DistributedDataParallel`` around the model (SyncBatchNorm
        on CUDA) under torchrun, the model itself otherwise."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if model.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(
                model, device_ids=[model.device.index], find_unused_parameters=find_unused_parameters
            )
        return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def any(self, flag: bool, device) -> bool:
        """True on every rank when the flag is true on any rank (keeps time-based decisions in step)."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=device if self.backend == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def all_gather(self, obj) -> list:
        """``obj`` of every rank, in rank order."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather(self, *arrays):
        """Concatenate each array over ranks (rank order); None entries stay None."""
        if not self.enabled:
            return arrays
        import numpy as np

        parts = self.all_gather(arrays)
        out = []
        for i in range(len(arrays)):
            pieces = [p[i] for p in parts if p[i] is not None]
            out.append(np.concatenate(pieces) if pieces else None)
        return tuple(out)


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init(gpu: int | None) -> DistContext:
    """Join the process group torchrun describes in the environment; a no-op without torchrun."""
    import torch.distributed as dist

    world = env_world_size()
    if world <= 1:
        return DistContext()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = gpu is not None and int(gpu) >= 0
    if use_cuda and not torch.cuda.is_available():
        raise CTRBenchError(
            f"--gpu {gpu} under torchrun, but torch sees no GPU; drop --gpu to train on CPU (gloo)"
        )
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(int(gpu) + local_rank)
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=int(os.environ.get("CTRBENCH_DIST_TIMEOUT", "1800")))
        dist.init_process_group(backend=backend, timeout=timeout)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend)


def device_index(ctx: DistContext, gpu: int | None) -> int:
    """The CUDA index this rank trains on (-1 = CPU)."""
    if gpu is None or int(gpu) < 0:
        return -1
    return int(gpu) + (ctx.local_rank if ctx.enabled else 0)


def shutdown(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rows [lo, hi) of a batch of n rows that rank trains on (contiguous, sizes differ by <= 1)."""
    return n * rank // world, n * (rank + 1) // world
