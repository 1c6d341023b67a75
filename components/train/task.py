"""Train stage: feature frames + spec (+ tuned params) in, a model folder out.

Importing this module is cheap (no torch/pandas); the work happens in `trainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from kubeloop.components.core.spec import ResolvedTask, Spec

# Called after every epoch with (epoch, metrics); returning True stops training (pruning).
EpochCallback = Callable[[int, dict[str, float]], "bool | None"]


class TrainResult(BaseModel):
    task: ResolvedTask
    best_epoch: int  # 1-based; the weights saved are this epoch's
    epochs_run: int
    stopped: Literal["max_epochs", "early_stopping", "callback"]
    history: list[dict[str, float]]  # epoch, train_loss, val_loss, val_metric, samples_per_s
    val_metric_name: str
    val_metric: float  # at best_epoch
    val_loss: float  # at best_epoch
    device: str
    precision: Literal["fp32", "bf16"]
    world_size: int = 1
    seconds: float  # wall time of the whole run
    samples_per_s: float  # training samples through the training loop per second
    params: dict[str, Any]  # resolved hyperparameters
    model_dir: str


def run(
    spec: Spec,
    train_path: str,
    val_path: str,
    model_dir: str,
    *,
    params: dict[str, Any] | None = None,
    epochs: int | None = None,
    tensorboard_dir: str | None = None,
    on_epoch: EpochCallback | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train the tabular MLP; early-stop on validation loss; write `model_dir`.

    `params` override `spec.train` (see `params.resolve_params`); `epochs` overrides
    `spec.train.epochs`. With more than one visible GPU (and no `on_epoch` callback, which
    cannot cross processes) the run is re-launched under torchrun with DDP.
    `resume=True` continues from `model_dir/checkpoints/last.pt` when it exists.
    """
    from kubeloop.components.train import distributed, trainer
    from kubeloop.components.train.params import resolve_params

    hp = resolve_params(spec, params, epochs)
    nproc = distributed.gpus_to_launch(spec.train.device) if on_epoch is None else 0
    if nproc > 1:
        return distributed.launch(
            spec,
            train_path,
            val_path,
            model_dir,
            nproc=nproc,
            params=params,
            epochs=epochs,
            tensorboard_dir=tensorboard_dir,
            resume=resume,
        )
    return trainer.fit(
        spec,
        train_path,
        val_path,
        model_dir,
        hp,
        tensorboard_dir=tensorboard_dir,
        on_epoch=on_epoch,
        resume=resume,
    )
