"""The trigger's persisted state (``<workdir>/trigger/state.json``) and its admission policy.

Everything that decides whether an alert starts a run lives here and is written atomically
before the HTTP reply, so a restarted trigger neither forgets an accepted request nor starts
one twice: the alert episodes it has acted on, and every accepted request with its progress.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from secrets import token_hex
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic
from kubeloop.serving.trigger.metrics import NotificationResult, RunOutcome

STATE_FILE = "state.json"
DAY_S = 86_400.0
# Episodes older than this are forgotten; cooldown and budget still guard a late repeat.
SEEN_TTL_S = 7 * DAY_S
KEPT_REQUESTS = 200  # finished requests kept for history (decision records keep the rest)

RequestStatus = Literal["queued", "running", "ran", "done"]


class AlertRef(BaseModel):
    """One alert of a notification, as the decision record shows it."""

    name: str
    fingerprint: str
    starts_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)

    @property
    def episode(self) -> str:
        """Dedupe key: the alert (its label fingerprint) and when this firing began, so the
        same alert firing again after it resolved is a new episode."""
        return f"{self.fingerprint}@{self.starts_at.isoformat()}"


class RetrainRequest(BaseModel):
    id: str
    accepted_at: float
    alerts: list[AlertRef]
    status: RequestStatus = "queued"
    attempts: int = 0
    run_id: str | None = None
    run: dict[str, object] | None = None  # the runner's result (RunResult as a dict)
    outcome: RunOutcome | None = None
    decision: str | None = None  # decision record path
    finished_at: float | None = None


class TriggerState(BaseModel):
    seen: dict[str, float] = Field(default_factory=dict)  # episode -> when accepted
    requests: list[RetrainRequest] = Field(default_factory=list)

    def accepted_since(self, since: float) -> int:
        return sum(1 for r in self.requests if r.accepted_at > since)

    def last_accepted_at(self) -> float | None:
        return max((r.accepted_at for r in self.requests), default=None)

    def pending(self) -> list[RetrainRequest]:
        return [r for r in self.requests if r.status != "done"]

    def prune(self, now: float) -> None:
        self.seen = {k: t for k, t in self.seen.items() if now - t < SEEN_TTL_S}
        done = [r for r in self.requests if r.status == "done"]
        # Keep the last day whole (the budget counts it) and a bounded history beyond it.
        drop = {r.id for r in done[:-KEPT_REQUESTS] if now - r.accepted_at >= DAY_S}
        self.requests = [r for r in self.requests if r.id not in drop]


def admit(
    state: TriggerState,
    firing: list[AlertRef],
    now: float,
    *,
    enabled: bool,
    cooldown_s: float,
    daily_budget: int,
) -> NotificationResult:
    """What to do with a notification's firing alerts (the state is not changed).

    In this order: nothing firing -> ignored; every episode already acted on -> duplicate;
    retraining disabled -> ignored; the last accepted request less than ``cooldown_s`` ago ->
    cooldown; ``daily_budget`` requests accepted in the last 24 hours -> budget; else
    accepted. Refused episodes are not remembered, so an alert that keeps firing past the
    cooldown (Alertmanager repeats it) is accepted then."""
    if not firing:
        return "ignored"
    if all(a.episode in state.seen for a in firing):
        return "duplicate"
    if not enabled:
        return "ignored"
    last = state.last_accepted_at()
    if last is not None and now - last < cooldown_s:
        return "cooldown"
    if state.accepted_since(now - DAY_S) >= daily_budget:
        return "budget"
    return "accepted"


def accept(state: TriggerState, firing: list[AlertRef], now: float) -> RetrainRequest:
    request = RetrainRequest(
        id=f"retrain-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}-{token_hex(3)}",
        accepted_at=now,
        alerts=firing,
    )
    state.requests.append(request)
    for alert in firing:
        state.seen[alert.episode] = now
    return request


class StateStore:
    """Reads and atomically rewrites the state file."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / STATE_FILE

    def load(self) -> TriggerState:
        if not self.path.is_file():
            return TriggerState()
        try:
            return TriggerState.model_validate(json.loads(self.path.read_text()))
        except (ValueError, ValidationError) as err:
            raise KubeloopError(
                f"{self.path}: not a valid trigger state file ({err}); "
                "move it aside to start with an empty state"
            ) from None

    def save(self, state: TriggerState) -> None:
        write_text_atomic(self.path, state.model_dump_json(indent=2))
