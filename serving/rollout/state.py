"""A rollout's persisted state and its decision records, under ``<spec.rollouts_dir>/``.

* ``state.json``: the one current (or last) rollout, rewritten atomically after every change.
  A promotion or rollback is first written as phase ``promoting`` / ``rolling_back`` with the
  decision (:class:`Pending`), and only then carried out; a controller that dies half-way
  finds the phase on restart and completes it, each side effect checked before it is repeated.
* ``decisions/<utc-ts>-<outcome>.json``: one record per promote, rollback or abort. The file
  name comes from the decision's own time, so completing a decision twice rewrites the same
  file instead of adding a second record.
* ``state.lock``: held (``flock``) by whoever changes the state: a controller tick or a CLI
  ``promote``/``abort``, so a manual abort is never overwritten by a tick running alongside.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic
from kubeloop.components.core.spec import ServeSpec
from kubeloop.serving.rollout.analysis import AnalysisResult

RolloutPhase = Literal["progressing", "promoting", "promoted", "rolling_back", "rolled_back"]
TERMINAL_PHASES: tuple[RolloutPhase, ...] = ("promoted", "rolled_back")
Outcome = Literal["promoted", "rolled_back", "aborted"]
Trigger = Literal["analysis", "deadline", "manual"]
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
DECISIONS_DIR = "decisions"
KEEP_ANALYSES = 100  # analyses kept in the state (the decision record copies them)


class Pending(BaseModel):
    """A promote/rollback that has been decided but maybe not yet carried out."""

    outcome: Outcome
    trigger: Trigger
    reason: str
    decided_at: datetime
    mark_failed: bool = False  # registry: canary -> failed (a failed analysis, not an abort)


class RolloutState(BaseModel):
    rollout_id: str
    name: str  # model name
    stable: str  # tag serving users before the rollout
    canary: str  # tag being rolled out
    serve: ServeSpec  # steps, interval, limits and checks as they were at start
    phase: RolloutPhase = "progressing"
    step: int = 0  # index into serve.canary_steps
    weight: float  # canary percent the gateway must have now
    started_at: datetime
    step_started_at: datetime
    next_analysis_at: datetime
    no_data_since: datetime | None = None  # first inconclusive analysis of this step
    failures: int = 0  # failed analyses so far (rollback once > serve.failure_limit)
    analyses: list[AnalysisResult] = Field(default_factory=list)
    last_error: str | None = None  # gateway/Prometheus trouble of the latest tick
    pending: Pending | None = None
    decision_file: str | None = None
    updated_at: datetime

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def steps(self) -> list[int]:
        return list(self.serve.canary_steps)

    @property
    def last_analysis(self) -> AnalysisResult | None:
        return self.analyses[-1] if self.analyses else None

    def add_analysis(self, result: AnalysisResult) -> None:
        """Keep conclusive analyses; an inconclusive one replaces an inconclusive latest."""
        last = self.last_analysis
        if last is not None and last.verdict not in ("pass", "fail"):
            self.analyses.pop()
        self.analyses.append(result)
        del self.analyses[:-KEEP_ANALYSES]


class StageChange(BaseModel):
    tag: str
    before: str | None
    after: str | None


class DecisionRecord(BaseModel):
    """Why a rollout ended the way it did: inputs, queries, values, thresholds, outcome."""

    rollout_id: str
    outcome: Outcome
    trigger: Trigger
    reason: str
    name: str
    stable: str
    canary: str
    step: int  # 1-based step the decision was taken at
    steps: list[int]
    weight: float  # canary weight when decided
    failures: int
    failure_limit: int
    min_requests: int
    interval_s: float
    deadline_s: float
    registry: list[StageChange]
    gateway: dict[str, object] | None  # the gateway's status after the action
    analyses: list[AnalysisResult]  # every analysis of the rollout kept in its state
    started_at: datetime
    decided_at: datetime
    completed_at: datetime


class StateStore:
    """Files of the rollouts of one project (``spec.rollouts_dir``)."""

    def __init__(self, rollouts_dir: str | Path) -> None:
        self.root = Path(rollouts_dir)
        self.path = self.root / STATE_FILE
        self.decisions_dir = self.root / DECISIONS_DIR

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK_FILE, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def load(self) -> RolloutState | None:
        if not self.path.is_file():
            return None
        try:
            return RolloutState.model_validate_json(self.path.read_text())
        except (ValidationError, ValueError) as err:
            raise KubeloopError(
                f"{self.path}: not a rollout state ({str(err).splitlines()[0]}); "
                "fix it or move it away (the decision records stay in "
                f"{self.decisions_dir})"
            ) from None

    def save(self, state: RolloutState) -> None:
        write_text_atomic(self.path, state.model_dump_json(indent=2) + "\n")

    def decision_path(self, pending: Pending) -> Path:
        stamp = pending.decided_at.strftime("%Y%m%dT%H%M%S%fZ")
        return self.decisions_dir / f"{stamp}-{pending.outcome}.json"

    def write_decision(self, pending: Pending, record: DecisionRecord) -> Path:
        path = self.decision_path(pending)
        write_text_atomic(path, record.model_dump_json(indent=2) + "\n")
        return path

    def decisions(self) -> list[tuple[Path, DecisionRecord]]:
        """Every decision record, oldest first; an unreadable file is an error naming it."""
        out = []
        for path in sorted(self.decisions_dir.glob("*.json")):
            try:
                out.append((path, DecisionRecord.model_validate_json(path.read_text())))
            except (ValidationError, ValueError) as err:
                raise KubeloopError(
                    f"{path}: not a decision record ({str(err).splitlines()[0]})"
                ) from None
        return out
