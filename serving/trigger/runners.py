"""How the trigger runs the retraining pipeline: the same runners as ``kubeloop pipeline run``.

* :class:`LocalPipelineRunner` runs ``kubeloop pipeline run --spec S --run-id ID`` (kfp.local
  through ``run_local``) as a child process. A child rather than a thread: ``run_local``
  redirects the process-wide stdout/stderr into the run log and initialises kfp.local's
  global state, which would swallow the trigger's own logging; and a run that crashes cannot
  take the receiver down. The outcome is read from the run record the pipeline writes.
* :class:`KfpPipelineRunner` submits to a Kubeflow Pipelines host (``pipelines.submit``),
  waits for the run and reads the gate's verdict from the model registry (the register task
  stores a model only when the gate passed, tagged with the run id).

Both can *recover* a run after a trigger restart: a finished run's result is read back
instead of running it again.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic
from kubeloop.components.core.spec import Spec, load_spec
from kubeloop.components.tracking.store import RunStore

RunStatus = Literal["succeeded", "gate_failed", "failed", "blocked"]
FINAL_STATUSES = ("succeeded", "gate_failed", "failed", "blocked")


class RunResult(BaseModel):
    """What the trigger needs to know about a finished pipeline run."""

    run_id: str
    status: RunStatus
    gate_passed: bool | None = None
    gate_reasons: list[str] = Field(default_factory=list)
    model_tag: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    primary_metric: str | None = None
    error: str | None = None
    report: str | None = None


class PipelineRunner(Protocol):
    def run(self, run_id: str) -> RunResult:
        """Run the retraining pipeline under `run_id` and wait for it to finish."""
        ...

    def recover(self, run_id: str) -> RunResult | None:
        """After a restart: the result of `run_id` if it finished (waiting for it if it is
        still running elsewhere), or None when it never finished and must be run again."""
        ...


def result_from_record(store: RunStore, run_id: str) -> RunResult | None:
    """The run record's outcome, or None while it is missing or still running."""
    try:
        record = store.get(run_id)
    except (KubeloopError, OSError, ValueError):  # not there (yet), or unreadable
        return None
    if record.status not in FINAL_STATUSES:
        return None
    gate = record.gate or {}
    return RunResult(
        run_id=run_id,
        status=record.status,  # type: ignore[arg-type]  # narrowed by FINAL_STATUSES
        gate_passed=gate.get("passed"),
        gate_reasons=list(gate.get("reasons", [])),
        model_tag=record.model_tag,
        metrics=record.metrics,
        primary_metric=record.primary_metric,
        error=record.error,
        report=record.artifacts.get("report"),
    )


class LocalPipelineRunner:
    """``kubeloop pipeline run`` in a child process; its output goes to
    ``<workdir>/trigger/runs/<run_id>.log`` and its pid and start time to ``<run_id>.pid``."""

    def __init__(self, spec_path: str | Path, *, poll_s: float = 1.0) -> None:
        self.spec_path = Path(spec_path).resolve()
        self.poll_s = poll_s

    def _spec(self) -> Spec:
        return load_spec(self.spec_path)  # re-read: a retrain uses the spec as it is now

    def _paths(self, spec: Spec, run_id: str) -> tuple[RunStore, Path]:
        logs = Path(spec.workdir) / "trigger" / "runs"
        logs.mkdir(parents=True, exist_ok=True)
        return RunStore.for_spec(spec), logs / run_id

    def command(self, run_id: str) -> list[str]:
        launcher = "from kubeloop.pipelines.cli.main import app; app()"
        return [
            sys.executable, "-c", launcher, "pipeline", "run",
            "--spec", str(self.spec_path), "--run-id", run_id, "--json",
        ]  # fmt: skip

    def run(self, run_id: str) -> RunResult:
        store, base = self._paths(self._spec(), run_id)
        with base.with_suffix(".log").open("wb") as log:
            proc = subprocess.Popen(self.command(run_id), stdout=log, stderr=subprocess.STDOUT)
            started = process_start_time(proc.pid)
            write_text_atomic(base.with_suffix(".pid"), f"{proc.pid} {started}")
            code = proc.wait()
        found = result_from_record(store, run_id)
        if found is not None:
            return found
        tail = base.with_suffix(".log").read_text(errors="replace")[-2000:]
        return RunResult(
            run_id=run_id,
            status="failed",
            error=f"`kubeloop pipeline run` exited with {code} and left no finished run "
            f"record; log {base.with_suffix('.log')}:\n{tail}",
        )

    def recover(self, run_id: str) -> RunResult | None:
        store, base = self._paths(self._spec(), run_id)
        pid_file = base.with_suffix(".pid")
        if pid_file.is_file():
            pid, started = pid_file.read_text().split()
            while process_start_time(int(pid)) == started:  # a child that outlived its trigger
                time.sleep(self.poll_s)
        return result_from_record(store, run_id)


def process_start_time(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None once it is gone or a zombie.
    Together with the pid it names one process: a reused pid has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return None if fields[0] == "Z" else fields[19]


class KfpClient(Protocol):
    def create_run_from_pipeline_func(self, pipeline_func: Any, **kwargs: Any) -> Any: ...

    def wait_for_run_completion(self, run_id: str, timeout: int) -> Any: ...


class KfpPipelineRunner:
    """Submit to a Kubeflow Pipelines host and wait; the verdict comes from the registry
    (shared ``BENTOML_HOME`` on a cluster), the rest from the run record when the workdir is
    shared too."""

    def __init__(
        self, spec: Spec, host: str, *, client: KfpClient | None = None, timeout_s: int = 86_400
    ) -> None:
        self.spec, self.host, self.timeout_s = spec, host, timeout_s
        self._client = client
        # KFP run ids by our run id, kept on disk so a restarted trigger finds its run.
        self._ids = Path(spec.workdir) / "trigger" / "runs"

    def client(self) -> KfpClient:
        if self._client is None:
            import kfp

            self._client = kfp.Client(host=self.host)
        return self._client

    def run(self, run_id: str) -> RunResult:
        from kubeloop.pipelines.submit import submit

        kfp_run = submit(self.spec, self.host, run_id, client=self.client())
        self._ids.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self._ids / f"{run_id}.kfp", kfp_run)
        return self._wait(run_id, kfp_run)

    def recover(self, run_id: str) -> RunResult | None:
        saved = self._ids / f"{run_id}.kfp"
        return self._wait(run_id, saved.read_text().strip()) if saved.is_file() else None

    def _wait(self, run_id: str, kfp_run: str) -> RunResult:
        done = self.client().wait_for_run_completion(kfp_run, timeout=self.timeout_s)
        state = str(getattr(done, "state", done)).upper()
        recorded = result_from_record(RunStore.for_spec(self.spec), run_id)
        if recorded is not None:
            return recorded
        if state != "SUCCEEDED":
            return RunResult(
                run_id=run_id, status="failed", error=f"KFP run {kfp_run} ended {state}"
            )
        from kubeloop.components.register.registry import list_models

        tags = [m.tag for m in list_models(self.spec.name) if m.metadata.get("run_id") == run_id]
        if tags:
            return RunResult(run_id=run_id, status="succeeded", gate_passed=True, model_tag=tags[0])
        return RunResult(
            run_id=run_id,
            status="gate_failed",
            gate_passed=False,
            gate_reasons=[f"run {run_id} registered no model: the gate refused it "
                          "(see the run's evaluate step in the KFP UI)"],
        )  # fmt: skip
