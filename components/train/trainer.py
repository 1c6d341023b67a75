"""The training loop shared by the single-process and the DDP path.

Data are small tabular frames, so whole tensors live on the device and batches are
contiguous slices of a once-per-epoch shuffled copy: on CPU that beats a DataLoader over a
TensorDataset (no per-sample collation) and per-batch index gathers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import read_table
from kubeloop.components.core.spec import ResolvedTask, Spec
from kubeloop.components.train import distributed
from kubeloop.components.train.distributed import RESULT_FILE, DistContext
from kubeloop.components.train.encoder import Encoder
from kubeloop.components.train.model import (
    CONFIG_FILE,
    ENCODER_FILE,
    MODEL_FILE,
    ModelConfig,
    TabularMLP,
    default_embedding_dim,
    outputs_to_predictions,
)
from kubeloop.components.train.params import VALIDATION_METRIC, HParams
from kubeloop.components.train.task import EpochCallback, TrainResult

EVAL_BATCH = 16384


def seed_everything(seed: int) -> None:
    # cuBLAS needs this workspace setting for deterministic matmuls (read at CUDA init).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


Precision = Literal["fp32", "bf16"]
StopReason = Literal["max_epochs", "early_stopping", "callback"]


def resolve_device(spec: Spec) -> tuple[torch.device, Precision]:
    """(device, precision) from spec.train.device / precision ("auto" picks the best)."""
    t = spec.train
    cuda = torch.cuda.is_available()
    if t.device == "cuda" and not cuda:
        raise KubeloopError("train.device: 'cuda' requested but no CUDA device is available")
    device = torch.device(
        "cuda" if (t.device == "cuda" or (t.device == "auto" and cuda)) else "cpu"
    )
    if t.precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return device, "bf16" if bf16 else "fp32"
    if t.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise KubeloopError("train.precision: 'bf16' requested but this GPU does not support it")
    return device, t.precision


@dataclass
class Arrays:
    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> Arrays:
        return Arrays(self.x_num[idx], self.x_cat[idx], self.y[idx])

    def batches(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), size):
            end = start + size
            yield self.x_num[start:end], self.x_cat[start:end], self.y[start:end]


def _arrays(enc: Encoder, df: Any, device: torch.device, what: str) -> Arrays:
    x_num, x_cat = enc.transform(df)
    y = enc.encode_label(df, what=what)
    yt = torch.from_numpy(y)
    if enc.task == "binary":
        yt = yt.float()  # BCE-with-logits wants float targets; convert once, not per batch
    return Arrays(
        torch.from_numpy(x_num).to(device), torch.from_numpy(x_cat).to(device), yt.to(device)
    )


def loss_function(task: ResolvedTask) -> nn.Module:
    if task == "multiclass":
        return nn.CrossEntropyLoss()
    return _FirstColumn(nn.BCEWithLogitsLoss() if task == "binary" else nn.MSELoss())


class _FirstColumn(nn.Module):
    """Single-output tasks: the loss on out[:, 0]."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = self.inner(out[:, 0].float(), y)
        return loss


def validation_metric(task: ResolvedTask, enc: Encoder, y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score, roc_auc_score, root_mean_squared_error

    if task == "binary":
        if len(np.unique(y)) < 2:
            return float("nan")  # AUC is undefined on a single-class validation set
        return float(roc_auc_score(y, pred[:, 1]))
    if task == "multiclass":
        return float(f1_score(y, pred.argmax(axis=1), average="macro"))
    return float(root_mean_squared_error(enc.decode_regression(y), enc.decode_regression(pred)))


def build_config(enc: Encoder, hp: HParams, kinds: dict[str, str]) -> ModelConfig:
    cards = enc.cardinalities
    dims = [hp.embedding_dim or default_embedding_dim(c) for c in cards]
    return ModelConfig(
        task=enc.task,
        label=enc.label,
        classes=enc.classes,
        features=enc.features,
        feature_kinds=kinds,
        numeric=enc.numeric,
        categorical=enc.categorical,
        cardinalities=cards,
        embedding_dims=dims,
        hidden_units=hp.hidden_units,
        dropout=hp.dropout,
        n_outputs=ModelConfig.outputs_for(enc.task, len(enc.classes)),
        params=hp.model_dump(),
    )


def fit(
    spec: Spec,
    train_path: str,
    val_path: str,
    model_dir: str,
    hp: HParams,
    *,
    tensorboard_dir: str | None = None,
    on_epoch: EpochCallback | None = None,
    resume: bool = False,
    ctx: DistContext | None = None,
) -> TrainResult:
    started = time.perf_counter()
    seed_everything(hp.seed)
    device, precision = resolve_device(spec)
    if ctx is not None and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    is_main = ctx is None or ctx.is_main
    world = ctx.world_size if ctx else 1

    train_df = read_table(train_path, what="train_path")
    val_df = read_table(val_path, what="val_path")
    enc = Encoder.fit(train_df, spec)
    kinds: dict[str, str] = {c: "numeric" for c in enc.numeric}
    kinds.update({c: "categorical" for c in enc.categorical})
    train = _arrays(enc, train_df, device, "train_path")
    val = _arrays(enc, val_df, device, "val_path")
    y_val = val.y.cpu().numpy()
    del train_df, val_df

    config = build_config(enc, hp, kinds)
    core = TabularMLP.from_config(config).to(device)  # unwrapped: what gets saved
    model: torch.nn.Module = core if ctx is None else distributed.wrap(core, ctx, device)
    opt = torch.optim.AdamW(model.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    loss_fn = loss_function(enc.task)
    autocast = (
        (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if precision == "bf16"
        else contextlib.nullcontext
    )
    metric_name, _ = VALIDATION_METRIC[enc.task]

    out = Path(model_dir)
    ckpt_dir = out / "checkpoints"
    writer = None
    if is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=tensorboard_dir or str(out / "tensorboard"))

    history: list[dict[str, float]] = []
    best_loss, best_epoch, bad_epochs = math.inf, 0, 0
    best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
    start_epoch = 1
    if resume and (ckpt_dir / "last.pt").is_file():
        ck = torch.load(ckpt_dir / "last.pt", map_location=device, weights_only=False)
        core.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"])
        history, best_loss, best_epoch, bad_epochs = (
            ck["history"],
            ck["best_loss"],
            ck["best_epoch"],
            ck["bad_epochs"],
        )
        best_state = torch.load(ckpt_dir / "best.pt", map_location=device, weights_only=True)
        start_epoch = ck["epoch"] + 1

    train_seconds, train_samples = 0.0, 0
    stopped: StopReason = "max_epochs"
    for epoch in range(start_epoch, hp.epochs + 1):
        # -- train one epoch (the timer covers the shuffle too: it is data-loading work) --
        t0 = time.perf_counter()
        if ctx is None:
            g = torch.Generator().manual_seed(hp.seed + epoch)
            idx = torch.randperm(len(train), generator=g)
        else:
            idx = distributed.shard_indices(len(train), epoch, hp.seed, ctx)
        shuffled = train.take(idx.to(device))
        model.train()
        total = torch.zeros((), device=device)
        for xb_num, xb_cat, yb in shuffled.batches(hp.batch_size):
            if config.batch_norm and len(yb) < 2:
                continue  # BatchNorm cannot train on a single row
            with autocast():
                loss = loss_fn(model(xb_num, xb_cat), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().float() * len(yb)
        if ctx is not None:
            total = distributed.all_reduce_sum(total)
        train_loss = float(total.item()) / (len(shuffled) * world)  # .item() syncs the GPU
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        train_samples += len(shuffled) * world

        # -- validate ---------------------------------------------------------------------
        val_loss, pred = _evaluate(core, val, loss_fn, enc.task, autocast)
        val_metric = validation_metric(enc.task, enc, y_val, pred)
        row = {
            "epoch": float(epoch),
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_metric": val_metric,
            "samples_per_s": len(shuffled) * world / max(epoch_seconds, 1e-9),
        }
        history.append(row)
        if val_loss < best_loss:
            best_loss, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
            if is_main:
                torch.save(best_state, ckpt_dir / "best.pt")
        else:
            bad_epochs += 1
        if writer is not None:
            writer.add_scalar("loss/train", train_loss, epoch)
            writer.add_scalar("loss/val", val_loss, epoch)
            writer.add_scalar(f"val/{metric_name}", val_metric, epoch)
            writer.add_scalar("throughput/samples_per_s", row["samples_per_s"], epoch)
        if is_main:
            torch.save(
                {
                    "epoch": epoch,
                    "model": core.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "history": history,
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                },
                ckpt_dir / "last.pt",
            )

        stop: StopReason | None = None
        if bad_epochs >= hp.patience:
            stop = "early_stopping"
        elif on_epoch is not None and on_epoch(
            epoch, {"train_loss": train_loss, "val_loss": val_loss, metric_name: val_metric}
        ):
            stop = "callback"
        if ctx is not None:  # rank 0 decides; every rank must leave the loop together
            flag = distributed.broadcast_flag(stop is not None, device)
            stop = (stop or "early_stopping") if flag else None
        if stop:
            stopped = stop
            break

    core.load_state_dict(best_state)
    best = history[best_epoch - 1] if best_epoch else history[-1]
    result = TrainResult(
        task=enc.task,
        best_epoch=best_epoch,
        epochs_run=len(history),
        stopped=stopped,
        history=history,
        val_metric_name=metric_name,
        val_metric=best["val_metric"],
        val_loss=best["val_loss"],
        device=str(device),
        precision=precision,
        world_size=world,
        seconds=time.perf_counter() - started,
        samples_per_s=train_samples / max(train_seconds, 1e-9),
        params=hp.model_dump(),
        model_dir=str(out),
    )
    if is_main:
        _save(out, core, config, enc, result)
    if writer is not None:
        writer.close()
    return result


def _evaluate(
    model: TabularMLP,
    data: Arrays,
    loss_fn: nn.Module,
    task: ResolvedTask,
    autocast: Any,
) -> tuple[float, np.ndarray]:
    model.eval()
    outs = []
    with torch.inference_mode(), autocast():
        for xb_num, xb_cat, _ in data.batches(EVAL_BATCH):
            outs.append(model(xb_num, xb_cat).float())
    out = torch.cat(outs)
    with torch.inference_mode():
        loss = float(loss_fn(out, data.y).item())
        pred = outputs_to_predictions(out, task).cpu().numpy()
    return loss, pred


def _save(
    out: Path, model: TabularMLP, config: ModelConfig, enc: Encoder, res: TrainResult
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, out / MODEL_FILE)
    (out / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=1))
    enc.save(out / ENCODER_FILE)
    (out / RESULT_FILE).write_text(res.model_dump_json(indent=1))
