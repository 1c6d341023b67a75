"""``POST /feedback``: ground-truth labels for rows the gateway answered earlier.

Body ``{"labels": [{"request_id": "r1", "row": 0, "label": "yes"}, ...]}`` (``row``, the row's
index in its ``/predict_batch`` request, defaults to 0). Answer 200
``{"received", "joined", "relabelled", "unmatched"}``: every label is written to the label
log first (the 200 means it is on disk), then joined to the rows the gateway still remembers
(``unmatched``: rows it does not remember, e.g. from before a restart; the offline join
``kubeloop feedback report`` and retraining still use them).

Refused with nothing written: 400 naming the field (``detail[].loc``, e.g.
``["labels", 3, "label"]``) for a malformed body, an empty or too long list (more than
``serve.max_rows`` labels) or a label that is not one of the model's classes (not a finite
number for regression); 503 while no model is ready to say what a label must be.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from kubeloop.serving.feedback.labels import LabelError, check_label, records, write_labels
from kubeloop.serving.feedback.live import LiveQuality, Served
from kubeloop.serving.schemas import Prediction, RequestId, VariantMetadata, too_many_rows

# Strict members: a label keeps its JSON type ("1" and 1 are matched to classes later).
LabelValue = (
    Annotated[str, Field(strict=True, max_length=1000)]
    | Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
)


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: RequestId = Field(description="The request_id the gateway answered with.")
    row: int = Field(default=0, ge=0, strict=True, description="Row index in the request.")
    label: LabelValue = Field(description="The true class (classification) or value.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: list[LabelIn] = Field(min_length=1, description="Labels of answered rows.")


class FeedbackResponse(BaseModel):
    received: int = Field(description="Labels written to the label log.")
    joined: int = Field(description="Labels joined to a served row the gateway remembers.")
    relabelled: int = Field(description="Rows labelled before (logged, not counted again).")
    unmatched: int = Field(description="Rows the gateway does not remember (joined offline).")


class FeedbackRefused(Exception):
    """A /feedback answer other than 200: status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail"))
        self.status = status
        self.body = body


def _refused(err: ValidationError) -> FeedbackRefused:
    errors = err.errors(include_context=False, include_input=False, include_url=False)
    n = len(errors)
    return FeedbackRefused(
        400, {"error": f"{n} validation error{'s' * (n != 1)}", "detail": [dict(e) for e in errors]}
    )


class Feedback:
    """The gateway's label intake: checks, the durable label log, the live join."""

    def __init__(self, folder: str | Path, live: LiveQuality, max_labels: int) -> None:
        self.folder = Path(folder)
        self.live = live
        self.max_labels = max_labels

    def remember(
        self,
        request_id: str,
        rows: Sequence[int],
        predictions: Sequence[Prediction],
        variants: Sequence[str],
        meta: VariantMetadata,
        *,
        shadow: bool,
    ) -> None:
        """Answered rows (their index in the request), for labels that arrive later."""
        positive = meta.classes[1] if meta.task == "binary" and len(meta.classes) == 2 else None
        served = []
        for row, p, variant in zip(rows, predictions, variants, strict=True):
            score = None
            if positive is not None:
                score = (p.probabilities or {}).get(str(positive), 0.0)
            served.append((row, Served(variant, p.model, meta.task, p.prediction, score, positive)))
        for variant, model in {(v, p.model) for p, v in zip(predictions, variants, strict=True)}:
            if len(meta.classes) <= 20:  # confusion series: classes squared
                self.live.init_series(variant, model, meta.task, meta.classes)
        self.live.remember(request_id, served, shadow)

    async def receive(
        self, labels: Sequence[Any], meta: VariantMetadata | None
    ) -> FeedbackResponse:
        if meta is None:
            raise FeedbackRefused(
                503, {"detail": "no model is ready yet to check labels against; retry"}
            )
        if len(labels) > self.max_labels:
            raise _refused(too_many_rows("labels", len(labels), self.max_labels, ("labels",)))
        items, errors = [], []
        for i, raw in enumerate(labels):
            item = raw if isinstance(raw, LabelIn) else LabelIn.model_validate(raw)
            try:
                value = check_label(item.label, meta.task, meta.classes)
            except LabelError as err:
                errors.append(
                    InitErrorDetails(
                        type=PydanticCustomError("label", str(err)),
                        loc=("labels", i, "label"),
                        input=item.label,
                    )
                )
                continue
            items.append((item.request_id, item.row, value))
        if errors:
            raise _refused(ValidationError.from_exception_data("labels", errors))
        try:
            await asyncio.to_thread(write_labels, self.folder, records(items, "api"))
        except OSError as err:
            raise FeedbackRefused(
                503, {"detail": f"label log {self.folder} not writable, nothing kept: {err}"}
            ) from err
        joined, relabelled = self.live.label(items)
        return FeedbackResponse(
            received=len(items),
            joined=joined,
            relabelled=relabelled,
            unmatched=len(items) - joined - relabelled,
        )
