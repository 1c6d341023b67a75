"""Request/response models of a model variant, and the per-model row model built at load time.

The public request is a list of RAW feature rows (the model's feature names, values as the
source data had them; missing values allowed, the registered clean params impute them).
Each model gets its own row model from its feature list and kinds, so a bad row fails with
a pydantic error whose ``loc`` names the row and the field, e.g. ``["rows", 3, "age"]``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    create_model,
    with_config,
)
from typing_extensions import TypedDict

from kubeloop.components.core.schema import category_text

# Class labels keep their JSON type (a 0/1 label answers 0/1, a yes/no label "yes"/"no").
Label = str | int | float | bool


class Prediction(BaseModel):
    """One scored row."""

    prediction: Label = Field(description="Class label (classification) or value (regression).")
    probabilities: dict[str, float] | None = Field(
        default=None, description="Class -> probability (classification only)."
    )
    model: str = Field(description="Tag (name:version) of the model that answered.")
    threshold: float | None = Field(
        default=None, description="Decision threshold on the positive class (binary only)."
    )


class VariantMetadata(BaseModel):
    """What a gateway checks before routing traffic to a variant."""

    tag: str
    name: str
    version: str
    stage: str
    task: str
    classes: list[Label]
    features: list[str]
    feature_kinds: dict[str, Literal["numeric", "categorical"]]
    feature_service: str | None
    label: str | None
    threshold: float | None
    primary_metric: str | None
    metrics: dict[str, float]


# ---------------------------------------------------------------------------- row models

NumericValue = Annotated[float | None, Field(strict=True, allow_inf_nan=False)]


def _categorical(v: Any) -> str | None:
    """Text, a whole number, a finite float or a boolean (as in the source data) -> the text
    clean and the encoder use for it (:func:`category_text`); anything else is rejected."""
    if v is None or isinstance(v, str | bool | int):
        return category_text(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("a categorical value must be text or a finite number")
        return category_text(v)
    raise ValueError("a categorical value must be text, a number, a boolean or null")


CategoricalValue = Annotated[str | None, PlainValidator(_categorical)]


def row_type(name: str, kinds: dict[str, Literal["numeric", "categorical"]]) -> Any:
    """A TypedDict for one raw row of a model: every feature is required (null allowed:
    imputed), no other keys. A TypedDict, not a BaseModel: feature names are arbitrary
    strings (spaces, ``json``, ``model_...``) and validation yields plain dicts."""
    fields = {
        col: NumericValue if kind == "numeric" else CategoricalValue for col, kind in kinds.items()
    }
    row = TypedDict(f"{name}Row", fields)  # type: ignore[misc]
    return with_config(ConfigDict(extra="forbid"))(row)


def request_model(row: Any) -> type[BaseModel]:
    """``{"rows": [row, ...]}`` with at least one row; errors are located as
    ``["rows", i, field]``. The row limit is checked by the caller, before validation and
    without echoing the rows back (a ``max_length`` error here would carry them all)."""
    rows_type = Annotated[list[row], Field(min_length=1)]
    return create_model(
        f"{row.__name__}s", __config__=ConfigDict(extra="forbid"), rows=(rows_type, ...)
    )
