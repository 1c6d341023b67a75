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
    ValidationError,
    create_model,
    model_validator,
    with_config,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
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


class RowValidator:
    """Raw rows -> typed rows for one model (its features and kinds), with the row limit.

    Built from a loaded model by the variant service, and from a variant's metadata by the
    gateway (remote variants), so both refuse the same rows with the same ``loc``."""

    def __init__(
        self, name: str, kinds: dict[str, Literal["numeric", "categorical"]], max_rows: int
    ) -> None:
        self.max_rows = max_rows
        self.request = request_model(row_type(name, kinds))

    @classmethod
    def for_metadata(cls, meta: VariantMetadata, max_rows: int) -> RowValidator:
        return cls(meta.name, meta.feature_kinds, max_rows)

    def validate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Typed rows (floats / text / None), or a pydantic ValidationError that names each
        bad row and field."""
        # The one row limit: refused before validating a huge batch row by row.
        if len(rows) > self.max_rows:
            raise too_many_rows(self.request.__name__, len(rows), self.max_rows, ("rows",))
        valid: list[dict[str, Any]] = self.request.model_validate({"rows": rows}).rows  # type: ignore[attr-defined]
        return valid


def too_many_rows(title: str, rows: int, max_rows: int, loc: tuple[str, ...]) -> ValidationError:
    """The row-limit error (without echoing the rows back)."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(
                    "too_many_rows",
                    "at most {max_rows} rows per request, got {rows}",
                    {"max_rows": max_rows, "rows": rows},
                ),
                loc=loc,
                input=None,
            )
        ],
    )


# ---------------------------------------------------------------------------- gateway

# Entity ids as Feast keys them: text or a 64-bit integer (no bools, no floats).
EntityId = (
    Annotated[str, Field(strict=True, min_length=1, max_length=256)]
    | Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
)
RequestId = Annotated[str, Field(strict=True, min_length=1, max_length=200)]
FeatureRow = dict[str, Any]


class PredictRequest(BaseModel):
    """``POST /predict``: one row, as raw feature values or as an entity id."""

    model_config = ConfigDict(extra="forbid")

    features: FeatureRow | None = Field(
        default=None, description="Raw feature values of one row (the model's feature names)."
    )
    entity_id: EntityId | None = Field(
        default=None, description="Entity id whose features come from the online store."
    )
    request_id: RequestId | None = Field(
        default=None, description="Caller's id (else header x-request-id, else generated)."
    )

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.features is None) == (self.entity_id is None):
            raise ValueError("give exactly one of 'features' (an object) or 'entity_id'")
        return self


class PredictBatchRequest(BaseModel):
    """``POST /predict_batch``: rows as raw feature values or as entity ids."""

    model_config = ConfigDict(extra="forbid")

    rows: list[FeatureRow] | None = Field(default=None, description="Raw feature rows.")
    entity_ids: list[EntityId] | None = Field(
        default=None, description="Entity ids whose features come from the online store."
    )
    request_id: RequestId | None = Field(
        default=None, description="Caller's id (else header x-request-id, else generated)."
    )

    @model_validator(mode="after")
    def _one_input(self) -> PredictBatchRequest:
        if (self.rows is None) == (self.entity_ids is None):
            raise ValueError("give exactly one of 'rows' (a list of objects) or 'entity_ids'")
        if self.rows == [] or self.entity_ids == []:
            raise ValueError("'rows' / 'entity_ids' must hold at least one item")
        return self


class GatewayPrediction(Prediction):
    """One scored row, with the variant that answered it."""

    variant: Literal["stable", "canary"] = Field(description="Which side of the rollout.")
    request_id: str


class GatewayBatchResponse(BaseModel):
    request_id: str
    predictions: list[GatewayPrediction]
