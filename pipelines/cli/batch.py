"""`kubeloop pipeline score`: the batch-scoring pipeline, run here through kfp.local or
submitted to Kubeflow Pipelines (once, or as a recurring run on a cron schedule)."""

from __future__ import annotations

import contextlib
import re
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import typer
from rich.console import Console

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import Spec
from kubeloop.pipelines.cli.common import JsonOption, SpecOption, print_json, user_errors

if TYPE_CHECKING:
    from kubeloop.components.predict.task import ScoreResult

SCORE_STEP = "score"
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#LW-]+$")


class ScoringClient(Protocol):
    """The part of `kfp.Client` submission uses (tests pass a recording stand-in: no
    Kubeflow Pipelines server can run here)."""

    def create_run_from_pipeline_func(self, pipeline_func: Any, **kwargs: Any) -> Any: ...

    def create_experiment(self, name: str, **kwargs: Any) -> Any: ...

    def create_recurring_run(self, experiment_id: str, job_name: str, **kwargs: Any) -> Any: ...


def compile_batch_scoring(spec: Spec, out: str | Path) -> Path:
    """Write the batch-scoring pipeline's IR YAML for `spec` to `out`."""
    from kfp import compiler

    from kubeloop.components.core.io import atomic_path
    from kubeloop.pipelines.batch_scoring import build_batch_scoring_pipeline

    out = Path(out)
    with atomic_path(out) as tmp:
        # The compiler picks the format by suffix: keep the target's.
        staged = tmp.with_name(tmp.name + out.suffix)
        try:
            compiler.Compiler().compile(
                build_batch_scoring_pipeline(spec), package_path=str(staged)
            )
            staged.replace(tmp)
        finally:
            staged.unlink(missing_ok=True)
    return out


def kfp_cron(schedule: str) -> str:
    """A crontab schedule (5 fields, "0 2 * * *") as KFP wants it: 6 fields, seconds first
    (a 6-field schedule passes unchanged)."""
    fields = schedule.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise KubeloopError(
            f"--schedule {schedule!r}: expected a cron schedule of 5 fields "
            '(minute hour day month weekday, e.g. "0 2 * * *") or 6 with seconds first'
        )
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def submit_scoring(
    spec: Spec,
    host: str,
    arguments: dict[str, Any],
    run_name: str,
    *,
    schedule: str | None = None,
    client: ScoringClient | None = None,
) -> str:
    """Start the pipeline on a KFP host (a recurring run with `schedule`); returns the id
    of the run or the recurring run."""
    from kubeloop.pipelines.batch_scoring import build_batch_scoring_pipeline

    cron = kfp_cron(schedule) if schedule is not None else None
    if client is None:
        import kfp

        client = kfp.Client(host=host)
    arguments = {**arguments, "spec_json": spec.model_dump_json()}
    if cron is None:
        result = client.create_run_from_pipeline_func(
            build_batch_scoring_pipeline(spec),
            arguments=arguments,
            run_name=run_name,
            experiment_name=spec.name,
            enable_caching=False,
        )
        return str(getattr(result, "run_id", result))
    experiment = client.create_experiment(name=spec.name)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_batch_scoring(spec, Path(tmp) / "batch_scoring.yaml")
        job = client.create_recurring_run(
            experiment_id=str(getattr(experiment, "experiment_id", experiment)),
            job_name=run_name,
            description=f"kubeloop batch scoring for {spec.name} on schedule {schedule!r}",
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,  # a cluster that was down runs the next one, not a backlog
            params=arguments,
            pipeline_package_path=str(package),
            enable_caching=False,
        )
    return str(getattr(job, "recurring_run_id", job))


def run_scoring_local(
    spec: Spec,
    *,
    model: str,
    input_path: str | Path,
    output_path: str | Path,
    chunk_rows: int,
    run_id: str | None = None,
    runner: Any = None,
) -> ScoreResult:
    """Run the batch-scoring pipeline with kfp.local (SubprocessRunner in this venv, as the
    training pipeline runs). The model and the input are checked first, so a bad one fails
    at once with its message; a failure inside the task is reported with the task's error.
    kfp.local's log goes to `{workdir}/runs/<run_id>/pipeline.log`."""
    from kfp import local

    from kubeloop.components.core.io import check_table_path, table_format
    from kubeloop.components.predict.task import ScoreResult, resolve_tag
    from kubeloop.components.register import registry
    from kubeloop.components.tracking.steps import read_events
    from kubeloop.pipelines.batch_scoring import build_batch_scoring_pipeline
    from kubeloop.pipelines.local import new_run_id

    src, dst = Path(input_path).resolve(), Path(output_path).resolve()
    check_table_path(src, "--input")
    table_format(dst, "--output")
    registry.get(resolve_tag(model, spec.name))  # names the model when it is unknown

    run_id = run_id or f"score-{new_run_id(spec)}"
    workdir = Path(spec.workdir)
    log_path = workdir / "runs" / run_id / "pipeline.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "pipeline_root"),
        raise_on_error=True,
    )
    pipeline = build_batch_scoring_pipeline(spec)
    # As for training: the platform image is not a Python base image; kfp.local runs the
    # component in this venv instead, by design.
    warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
    error: str | None = None
    with (
        log_path.open("w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            task = pipeline(
                spec_json=spec.model_dump_json(),
                run_id=run_id,
                model=model,
                input_path=str(src),
                output_path=str(dst),
                chunk_rows=chunk_rows,
            )
        except RuntimeError as err:  # kfp.local: "Pipeline ... Inner task failed: ..."
            error = str(err)
    if error is not None:
        failed = [e for e in read_events(workdir, run_id) if e.get("status") == "failed"]
        reason = failed[0]["error"] if failed else error
        raise KubeloopError(f"batch scoring failed: {reason} (log: {log_path})")
    return ScoreResult.model_validate_json(task.output)


@user_errors
def score_command(
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="CSV or Parquet file to score (a path inside the pod with --host).",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Where to write the scores (.csv or .parquet, by suffix)."
        ),
    ],
    spec: SpecOption = Path("kubeloop.yaml"),
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model tag (name:version, name:latest) or a stage of the spec's model "
            "(production, candidate, ...).",
        ),
    ] = "production",
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Rows read, scored and written at a time.")
    ] = 50_000,
    host: Annotated[
        str | None,
        typer.Option(help="Kubeflow Pipelines endpoint: submit there instead of running here."),
    ] = None,
    schedule: Annotated[
        str | None,
        typer.Option(
            help='With --host: a recurring run on this cron schedule (e.g. "0 2 * * *", UTC).'
        ),
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: generated).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Batch-score a file with a registered model through the batch-scoring pipeline.

    Runs here through kfp.local (the output appears only once every row is scored), or
    with --host on Kubeflow Pipelines: one run, or a recurring run with --schedule."""
    from kubeloop.components.core.spec import load_spec
    from kubeloop.pipelines.local import new_run_id

    out = Console()
    if schedule is not None and host is None:
        raise KubeloopError("--schedule needs --host (recurring runs live on Kubeflow Pipelines)")
    if host is not None:
        loaded = load_spec(spec, resolve=False)
        name = run_id or f"score-{new_run_id(loaded)}"
        arguments = {
            "model": model,
            "input_path": input,
            "output_path": output,
            "chunk_rows": chunk_rows,
            "run_id": "",  # steps are recorded only for local runs (the workdir is local)
        }
        kfp_id = submit_scoring(loaded, host, arguments, name, schedule=schedule)
        what = f"recurring run {kfp_id} ({schedule})" if schedule else f"run {kfp_id}"
        if as_json:
            print_json({"host": host, "schedule": schedule, "id": kfp_id, "name": name})
        else:
            out.print(f"submitted {what} to {host}", highlight=False)
        return
    result = run_scoring_local(
        load_spec(spec),
        model=model,
        input_path=input,
        output_path=output,
        chunk_rows=chunk_rows,
        run_id=run_id,
    )
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    out.print(
        f"scored {result.rows:,} rows in {result.chunks} chunk(s) with {result.model_tag}: "
        f"{result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s) → {result.output_path}",
        highlight=False,
        soft_wrap=True,
    )
