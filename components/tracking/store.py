"""Run tracking: one folder per pipeline run under ``{spec.workdir}/runs/<run_id>/``.

* ``run.json`` — the :class:`RunRecord`, rewritten atomically (temp file + ``os.replace``)
  on every change, so a reader never sees a half-written record.
* ``spec.yaml`` — the validated spec of the run (defaults filled in, paths absolute), so the
  run can be repeated exactly: ``kubeloop pipeline run --spec <that file>``.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, Field

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic

if TYPE_CHECKING:
    from kubeloop.components.core.spec import Spec

RunStatus = Literal["running", "succeeded", "failed", "blocked", "gate_failed"]
RUN_FILE = "run.json"
SPEC_FILE = "spec.yaml"


class RunRecord(BaseModel):
    run_id: str
    status: RunStatus = "running"
    started_at: datetime
    finished_at: datetime | None = None
    spec: dict[str, Any]
    spec_hash: str
    code_version: dict[str, str | None] = Field(default_factory=dict)  # version, git_commit
    data_fingerprint: str | None = None
    seeds: dict[str, int] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)  # tuned hyperparameters
    metrics: dict[str, float] = Field(default_factory=dict)
    primary_metric: str | None = None
    gate: dict[str, Any] | None = None  # GateResult as a dict
    model_tag: str | None = None
    artifacts: dict[str, str] = Field(default_factory=dict)  # name -> path / URI
    error: str | None = None
    steps: list[dict[str, Any]] = Field(default_factory=list)  # step, status, seconds, error

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def primary_value(self) -> float | None:
        return self.metrics.get(self.primary_metric) if self.primary_metric else None


def code_version() -> dict[str, str | None]:
    """kubeloop's version, plus the git commit when the package is a git checkout."""
    import kubeloop

    pkg = Path(kubeloop.__file__).resolve().parent
    commit = None
    if (pkg / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(pkg), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            commit = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"version": kubeloop.__version__, "git_commit": commit}


class RunStore:
    """Run records under `root` (normally ``{spec.workdir}/runs``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_spec(cls, spec: Spec) -> RunStore:
        return cls(Path(spec.workdir) / "runs")

    def _file(self, run_id: str) -> Path:
        return self.root / run_id / RUN_FILE

    def _save(self, record: RunRecord) -> RunRecord:
        write_text_atomic(self._file(record.run_id), record.model_dump_json(indent=2))
        return record

    def start(self, run_id: str, spec: Spec) -> RunRecord:
        if self._file(run_id).exists():
            raise KubeloopError(f"run {run_id!r} already exists in {self.root}")
        spec_dict = spec.model_dump(mode="json")
        write_text_atomic(
            self.root / run_id / SPEC_FILE,
            yaml.safe_dump(spec_dict, sort_keys=False),
        )
        return self._save(
            RunRecord(
                run_id=run_id,
                started_at=datetime.now(UTC),
                spec=spec_dict,
                spec_hash=spec.spec_hash(),
                code_version=code_version(),
                seeds={
                    "split": spec.data.split.seed,
                    "train": spec.train.seed,
                    "tune_sampler": spec.tune.sampler_seed,
                },
            )
        )

    def update(self, run_id: str, **fields: Any) -> RunRecord:
        """Set fields of the record (validated); dict fields ``artifacts``/``metrics``/
        ``params`` are merged rather than replaced."""
        record = self.get(run_id)
        data = record.model_dump()
        unknown = sorted(set(fields) - set(data))
        if unknown:
            raise KubeloopError(f"unknown run record field(s) {unknown}; known: {sorted(data)}")
        for key, value in fields.items():
            if key in ("artifacts", "metrics", "params") and isinstance(value, dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return self._save(RunRecord.model_validate(data))

    def finish(self, run_id: str, status: RunStatus, error: str | None = None) -> RunRecord:
        return self.update(run_id, status=status, error=error, finished_at=datetime.now(UTC))

    def record_summary(
        self, run_id: str, summary: dict[str, Any], events: list[dict[str, Any]]
    ) -> RunRecord:
        """Fold the runner's summary and the tasks' step events (see ``tracking.steps``)
        into the record, and mark it finished."""
        fields: dict[str, Any] = {"artifacts": {}, "params": {}}
        steps = []
        for ev in events:
            f = ev.get("fields") or {}
            fields["artifacts"].update(f.get("artifacts") or {})
            if f.get("data_fingerprint"):
                fields["data_fingerprint"] = f["data_fingerprint"]
            if isinstance(f.get("tuned_params"), dict):
                fields["params"].update(f["tuned_params"])
            steps.append(
                {
                    "step": ev.get("step"),
                    "status": ev.get("status"),
                    "seconds": round(float(ev.get("end", 0)) - float(ev.get("start", 0)), 3),
                    **({"error": ev["error"]} if ev.get("error") else {}),
                }
            )
        for key in ("report", "validation_report", "log"):
            if summary.get(key):
                fields["artifacts"][key] = summary[key]
        if summary.get("gate_passed") is not None:
            fields["gate"] = {
                "passed": summary["gate_passed"],
                "reasons": summary.get("gate_reasons", []),
            }
        error = summary.get("error")
        if error and summary.get("failed_step"):
            error = f"{summary['failed_step']}: {error}"
        return self.update(
            run_id,
            **fields,
            steps=steps,
            metrics=summary.get("metrics") or {},
            primary_metric=summary.get("primary_metric"),
            model_tag=summary.get("model_tag"),
            status=summary.get("status", "failed"),
            error=error,
            finished_at=datetime.now(UTC),
        )

    def list(self) -> list[RunRecord]:
        """All runs, newest first."""
        if not self.root.is_dir():
            return []
        records = [
            RunRecord.model_validate_json(f.read_text()) for f in self.root.glob(f"*/{RUN_FILE}")
        ]
        return sorted(records, key=lambda r: r.started_at, reverse=True)

    def resolve(self, run_id: str) -> str:
        """The full run id for `run_id` or a unique prefix of one."""
        if self._file(run_id).is_file():
            return run_id
        matches = sorted(
            d.name
            for d in (self.root.glob(f"{run_id}*") if self.root.is_dir() else [])
            if (d / RUN_FILE).is_file()
        )
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise KubeloopError(f"run id prefix {run_id!r} is ambiguous: {', '.join(matches)}")
        raise KubeloopError(
            f"no run {run_id!r} in {self.root} (see `kubeloop runs list --spec <kubeloop.yaml>`)"
        )

    def get(self, run_id: str) -> RunRecord:
        return RunRecord.model_validate_json(self._file(self.resolve(run_id)).read_text())

    def spec_path(self, run_id: str) -> Path:
        """The run's saved spec (re-run it with ``kubeloop pipeline run --spec <path>``)."""
        return self.root / self.resolve(run_id) / SPEC_FILE
