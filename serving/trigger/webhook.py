"""The Alertmanager webhook payload (``version: "4"``), validated.

Unknown keys are ignored: Alertmanager adds fields between releases and a receiver should not
refuse a notification for that. Missing or mistyped fields the trigger needs are errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kubeloop.serving.trigger.state import AlertRef


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")


class WebhookAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's field names (camelCase)
    endsAt: datetime | None = None
    generatorURL: str = ""
    fingerprint: str = Field(pattern=r"^[0-9a-fA-F]{1,64}$")

    @field_validator("labels")
    @classmethod
    def _has_name(cls, v: dict[str, str]) -> dict[str, str]:
        if not v.get("alertname"):
            raise ValueError("labels must include a non-empty 'alertname'")
        return v

    def ref(self) -> AlertRef:
        return AlertRef(
            name=self.labels["alertname"],
            fingerprint=self.fingerprint,
            starts_at=self.startsAt,
            labels=self.labels,
        )


class WebhookPayload(_Payload):
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupKey: str = ""
    alerts: list[WebhookAlert] = Field(min_length=1)

    def firing(self) -> list[AlertRef]:
        return [a.ref() for a in self.alerts if a.status == "firing"]


def payload_errors(err: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as ``{"field": "alerts.0.fingerprint", "error": "..."}``."""
    return [
        {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "error": e["msg"]}
        for e in err.errors()
    ]
