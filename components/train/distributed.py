"""Multi-GPU data parallelism, kept thin: everything else is the single-process trainer.

`train.task.run` on a machine with more than one visible GPU re-launches itself through
torchrun (`kubeloop.components.train.ddp_main`); each rank trains the same model on its
shard of every epoch (DistributedSampler) with gradients averaged by
DistributedDataParallel. `batch_size` is per process. Every rank evaluates the full
validation set; rank 0's early-stopping decision is broadcast, and only rank 0 writes the
model folder, checkpoints and TensorBoard files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from kubeloop.components.core.errors import KubeloopError

if TYPE_CHECKING:
    from kubeloop.components.core.spec import Spec
    from kubeloop.components.train.task import TrainResult

ARGS_FILE = "ddp_args.json"
RESULT_FILE = "train_result.json"


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def gpus_to_launch(device: str) -> int:
    """How many processes to launch: the GPU count when >1 and not already distributed."""
    if device == "cpu" or "WORLD_SIZE" in os.environ or not torch.cuda.is_available():
        return 0
    n = torch.cuda.device_count()
    return n if n > 1 else 0


def current(use_cuda: bool) -> DistContext | None:
    """Join the process group torchrun set up (None when not launched by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def finish(ctx: DistContext | None) -> None:
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def shard_indices(n: int, epoch: int, seed: int, ctx: DistContext) -> torch.Tensor:
    """This rank's shuffled rows for `epoch` (padded so every rank runs as many steps)."""
    from torch.utils.data import DistributedSampler

    # The sampler only needs len(dataset): a range stands in for the rows.
    sampler: DistributedSampler[int] = DistributedSampler(
        range(n),  # type: ignore[arg-type]
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=seed,
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def launch(
    spec: Spec,
    train_path: str,
    val_path: str,
    model_dir: str,
    *,
    nproc: int,
    params: dict[str, Any] | None = None,
    epochs: int | None = None,
    tensorboard_dir: str | None = None,
    resume: bool = False,
) -> TrainResult:
    """Run the training under torchrun with `nproc` processes; returns rank 0's result."""
    from kubeloop.components.train.task import TrainResult

    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = {
        "spec_json": spec.model_dump_json(),
        "train_path": train_path,
        "val_path": val_path,
        "model_dir": str(out),
        "params": params,
        "epochs": epochs,
        "tensorboard_dir": tensorboard_dir,
        "resume": resume,
    }
    args_file = out / ARGS_FILE
    args_file.write_text(json.dumps(args))
    (out / RESULT_FILE).unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "kubeloop.components.train.ddp_main",
        str(args_file),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env, check=False)
    args_file.unlink(missing_ok=True)
    if proc.returncode != 0 or not (out / RESULT_FILE).is_file():
        raise KubeloopError(
            f"distributed training ({nproc} processes) failed with exit code {proc.returncode}; "
            "see the torchrun output above"
        )
    return TrainResult.model_validate_json((out / RESULT_FILE).read_text())
