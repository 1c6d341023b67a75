"""The `kubeloop` command line: one Typer app with a sub-app per area."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console

from kubeloop import __version__
from kubeloop.components.core.errors import KubeloopError
from kubeloop.pipelines.cli.batch import compile_batch_scoring, score_command
from kubeloop.pipelines.cli.common import SpecOption, print_json, user_errors
from kubeloop.pipelines.cli.demo import demo_command
from kubeloop.pipelines.cli.feedback import app as feedback_app
from kubeloop.pipelines.cli.models import app as models_app
from kubeloop.pipelines.cli.monitor import app as monitor_app
from kubeloop.pipelines.cli.predict import predict_command
from kubeloop.pipelines.cli.rollout import app as rollout_app
from kubeloop.pipelines.cli.runs import app as runs_app
from kubeloop.pipelines.cli.serve import serve_command
from kubeloop.pipelines.cli.trigger import app as trigger_app

app = typer.Typer(
    name="kubeloop",
    help="kubeloop: validate, engineer features, tune, train, evaluate and register models "
    "in one loop — on this machine (kfp.local) or on Kubeflow Pipelines.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Demo and sample datasets.", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="Compile, run locally, or submit the training and batch-scoring pipelines.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(models_app, name="models", help="Registered models (BentoML store).")
app.add_typer(runs_app, name="runs", help="Pipeline run history.")
app.add_typer(trigger_app, name="trigger", help="Retrain trigger (Alertmanager webhook).")
app.add_typer(rollout_app, name="rollout")
app.add_typer(monitor_app, name="monitor")
app.add_typer(feedback_app, name="feedback")
app.command("predict")(predict_command)
app.command("serve")(serve_command)
app.command("demo")(demo_command)
pipeline_app.command("score")(score_command)

out_console = Console()


def _version(value: bool) -> None:
    if value:
        out_console.print(f"kubeloop {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """kubeloop command line."""


@app.command()
@user_errors
def init(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the spec.")] = Path(
        "kubeloop.yaml"
    ),
    source: Annotated[str, typer.Option(help="Data file (CSV or Parquet).")] = "data.csv",
    label: Annotated[str, typer.Option(help="Label column.")] = "label",
    name: Annotated[str, typer.Option(help="Project name.")] = "my_project",
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter spec (every section, with defaults)."""
    from kubeloop.components.core.spec import parse_spec

    if out.exists() and not force:
        raise KubeloopError(f"{out}: already exists (use --force to overwrite)")
    template = (Path(__file__).parent / "starter.yaml").read_text()
    text = template.format(name=name, source=source, label=label)
    import yaml

    parse_spec(yaml.safe_load(text), str(out))  # the starter must itself be valid
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out_console.print(
        f"wrote {out} — edit data.source and data.label, then run "
        f"`kubeloop pipeline run --spec {out}`"
    )


@data_app.command("demo")
@user_errors
def data_demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo"),
    rows: Annotated[int, typer.Option("--rows", "-n", min=100, help="Rows to generate.")] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 0,
    drift: Annotated[
        bool, typer.Option(help="Also write a later, shifted period (covariate + concept).")
    ] = False,
) -> None:
    """Write the customer-churn demo dataset (with realistic dirt) and a ready spec."""
    from kubeloop.components.datasets.churn import write_demo

    paths = write_demo(out, rows=rows, seed=seed, drift=drift)
    for what, path in paths.items():
        out_console.print(f"{what}: {path}")


@data_app.command("public")
@user_errors
def data_public(
    name: Annotated[str, typer.Argument(help="breast_cancer | wine | diabetes")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("data"),
) -> None:
    """Export a real public dataset bundled with scikit-learn (no download)."""
    from kubeloop.components.datasets.public import export

    path, label = export(name, out)
    out_console.print(f"wrote {path} (label column: {label})")


@pipeline_app.command("compile")
@user_errors
def pipeline_compile(
    spec: SpecOption = Path("kubeloop.yaml"),
    out: Annotated[Path, typer.Option("--out", "-o", help="IR YAML to write.")] = Path(
        "pipeline.yaml"
    ),
    pipeline: Annotated[
        Literal["training", "batch-scoring"],
        typer.Option(help="Which pipeline: the training loop, or batch scoring."),
    ] = "training",
) -> None:
    """Compile a pipeline (the training pipeline by default) to Kubeflow Pipelines IR YAML."""
    from kubeloop.components.core.spec import load_spec
    from kubeloop.pipelines.compile import compile_pipeline

    loaded = load_spec(spec, resolve=False)
    compile_fn = compile_batch_scoring if pipeline == "batch-scoring" else compile_pipeline
    path = compile_fn(loaded, out)
    out_console.print(f"wrote {path}")


def _print_summary(summary: Any) -> None:
    from rich.panel import Panel
    from rich.table import Table

    ok = summary.status == "succeeded"
    colour = {"succeeded": "green", "gate_failed": "yellow"}.get(summary.status, "red")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # paths must stay whole to be copied
    table.add_row("run", summary.run_id)
    table.add_row("status", f"[{colour}]{summary.status}[/]")
    if summary.failed_step:
        table.add_row("failed step", summary.failed_step)
    if summary.error:
        table.add_row("error", summary.error)
    if summary.gate_passed is not None:
        verdict = "[green]passed[/]" if summary.gate_passed else "[yellow]failed[/]"
        table.add_row("gate", verdict)
        for reason in summary.gate_reasons:
            table.add_row("", f"• {reason}")
    for name, value in sorted(summary.metrics.items()):
        mark = " (primary)" if name == summary.primary_metric else ""
        table.add_row(name, f"{value:.4f}{mark}")
    table.add_row("model", summary.model_tag or "[dim]not registered[/]")
    if summary.report:
        table.add_row("report", summary.report)
    if summary.validation_report and not ok:
        table.add_row("validation report", summary.validation_report)
    table.add_row("log", summary.log)
    table.add_row("time", f"{summary.seconds:.1f} s")
    out_console.print(Panel(table, title="kubeloop pipeline run", border_style=colour))


@pipeline_app.command("run")
@user_errors
def pipeline_run(
    spec: SpecOption = Path("kubeloop.yaml"),
    host: Annotated[
        str | None,
        typer.Option(help="Kubeflow Pipelines endpoint: submit there instead of running here."),
    ] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (default: generated).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    docker: Annotated[
        bool,
        typer.Option(
            "--docker",
            help="Run every component in the locally built component image "
            "(kfp.local DockerRunner; build it with `make images`, needs a Docker daemon).",
        ),
    ] = False,
) -> None:
    """Run the training pipeline locally through kfp.local (or submit it with --host)."""
    from kubeloop.components.core.spec import load_spec
    from kubeloop.pipelines.local import docker_runner, new_run_id, run_local

    if host and docker:
        raise KubeloopError("--host and --docker: choose one (--docker runs on this machine)")
    if host:
        from kubeloop.pipelines.submit import submit

        loaded = load_spec(spec, resolve=False)
        kfp_run = submit(loaded, host, run_id or new_run_id(loaded))
        out_console.print(f"submitted run {kfp_run} to {host}")
        return
    loaded = load_spec(spec)
    runner = docker_runner(loaded) if docker else None
    summary = run_local(loaded, run_id=run_id, runner=runner)
    if as_json:
        print_json(summary.model_dump(mode="json"))
    else:
        _print_summary(summary)
    if summary.status not in ("succeeded", "gate_failed"):
        raise typer.Exit(1)
