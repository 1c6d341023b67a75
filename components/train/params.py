"""Resolved hyperparameters (spec defaults + tuned overrides) and the validation metric.

Cheap to import (pydantic only): the tuner and the KFP component use it without torch.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeloop.components.core.errors import SpecError
from kubeloop.components.core.spec import TUNABLE, ResolvedTask, Spec

Direction = Literal["maximize", "minimize"]

# The metric tuning optimizes and early stopping reports, per task. f1_macro (not
# accuracy) for multiclass so tuning chases the evaluate stage's default gate metric.
VALIDATION_METRIC: dict[ResolvedTask, tuple[str, Direction]] = {
    "binary": ("roc_auc", "maximize"),
    "multiclass": ("f1_macro", "maximize"),
    "regression": ("rmse", "minimize"),
}


class HParams(BaseModel):
    """The hyperparameters one training run actually uses."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    hidden_units: list[int]
    dropout: float = Field(ge=0, lt=1)
    embedding_dim: int | None = Field(default=None, ge=1)
    patience: int = Field(ge=1)
    seed: int


def resolve_params(
    spec: Spec, params: dict[str, Any] | None = None, epochs: int | None = None
) -> HParams:
    """Spec's `train` section overridden by tuned `params` (keys from TUNABLE).

    Tuning searches a uniform MLP: `hidden_units` is then one int (the width) and
    `n_layers` the depth, giving `hidden_units = [width] * n_layers`. A missing width
    defaults to the spec's widest layer, a missing depth to the spec's layer count.
    A list for `hidden_units` (without `n_layers`) is used as is.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(TUNABLE))
    if unknown:
        raise SpecError(
            f"params: unknown hyperparameter(s) {unknown}; expected some of {sorted(TUNABLE)}"
        )
    t = spec.train
    hidden = list(t.hidden_units)
    width = params.pop("hidden_units", None)
    depth = params.pop("n_layers", None)
    if isinstance(width, list | tuple) and depth is None:
        hidden = [int(w) for w in width]
    elif width is not None or depth is not None:
        w = int(width) if width is not None else max(hidden, default=64)
        hidden = [w] * int(depth if depth is not None else len(hidden))
    values: dict[str, Any] = {
        "epochs": epochs if epochs is not None else t.epochs,
        "batch_size": t.batch_size,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "hidden_units": hidden,
        "dropout": t.dropout,
        "embedding_dim": t.embedding_dim,
        "patience": t.patience,
        "seed": t.seed,
    }
    values.update(params)
    try:
        return HParams.model_validate(values)
    except ValidationError as err:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise SpecError(f"params: invalid hyperparameters: {msgs}") from None
