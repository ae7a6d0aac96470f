"""torchrun, DDP and FSDP2: the only training code that knows it may run in more than one process.

One script serves both cases. `python -m mav train …` runs a single process with no process group;
`torchrun --nproc_per_node=N -m mav train …` sets RANK / WORLD_SIZE / LOCAL_RANK, and `setup_distributed` joins
the group ("nccl" on CUDA, "gloo" on the CPU). Models are wrapped in DDP, or sharded with FSDP2 `fully_shard`
when they outgrow one GPU. Tensors of a sharded model are DTensors; `full_tensor` and `shard_like` convert
between them and the plain full tensors a checkpoint holds, and are the identity on plain tensors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn


def setup_distributed(device: torch.device | str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes, or run alone; returns (rank, world size, device).

    `device` forces a device type ("cpu" runs gloo even where CUDA exists); by default CUDA when available.
    Each process of a CUDA run gets the GPU numbered by its LOCAL_RANK. Calling it again is harmless.
    """
    kind = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    local_rank = int(os.environ.get("LOCAL_RANK", 0)) if launched else 0
    if kind == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device(kind)
    if launched and not dist.is_initialized():
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), device
    return 0, 1, device


def teardown_distributed() -> None:
    """Leave the process group, if any (the last call of a torchrun process). On a normal exit the ranks meet
    first, so none tears gloo down while another still has work in flight (a rank of the two-process test once
    aborted at exit with "terminate called without an active exception" without it); while an exception is on
    its way out (this is called from `finally`), they do not wait, since the other ranks may never arrive."""
    if dist.is_initialized():
        if sys.exc_info()[1] is None:
            dist.barrier()
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_mean(x: Tensor) -> Tensor:
    """Mean of `x` over all processes (gloo has no AVG reduction, so SUM then divide)."""
    if not dist.is_initialized():
        return x
    x = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()


def broadcast_module(module: nn.Module, device: torch.device) -> None:
    """Copy rank 0's parameters and buffers to every rank, one tensor at a time (FSDP2 does not, unlike DDP)."""
    if not dist.is_initialized():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            buffer = tensor.to(device)
            dist.broadcast(buffer, src=0)
            tensor.copy_(buffer)


def wrap_model(module: nn.Module, device: torch.device, fsdp: bool, *,
               reshard_after_forward: bool = True) -> nn.Module:
    """The module as training runs it: itself alone, DDP across processes, or FSDP2-sharded with `fsdp`.

    FSDP2 shards every block of every `nn.ModuleList` (the usual transformer or UNet block lists) as its own
    unit, then the root, so only one block's parameters are gathered at a time. The module is changed in place;
    its parameter names stay the same. A single process has nothing to shard with, so `fsdp` then changes nothing.
    `reshard_after_forward` is FSDP2's own option of that name, for every unit but the root (which FSDP2 keeps
    gathered for the backward anyway).
    """
    if fsdp and dist.is_initialized():
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        broadcast_module(module, device)
        mesh = init_device_mesh(device.type, (world_size(),))
        for child in reversed(list(module.modules())):  # innermost first, as fully_shard requires
            if isinstance(child, nn.ModuleList):
                for block in child:
                    if any(True for _ in block.parameters()):
                        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
        fully_shard(module, mesh=mesh)
        return module
    module.to(device)
    if not dist.is_initialized():
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


@contextmanager
def gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """Reduce gradients across processes in this backward only if `sync` (the last micro-step of a step)."""
    from torch.nn.parallel import DistributedDataParallel

    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    if not sync and isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield


def full_tensor(t: Tensor) -> Tensor:
    """A detached full copy of `t` on the CPU; gathers a sharded DTensor (a collective: every rank calls it)."""
    from torch.distributed.tensor import DTensor

    if isinstance(t, DTensor):
        t = t.full_tensor()
    return t.detach().to("cpu", copy=True)


def shard_like(full: Tensor, ref: Tensor) -> Tensor:
    """`full` laid out like `ref`: same device and dtype, and the same sharding when `ref` is a DTensor."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(ref, DTensor):
        return distribute_tensor(full.to(ref.device, ref.dtype), ref.device_mesh, ref.placements)
    return full.to(ref.device, ref.dtype)
