"""`kubeloop feedback`: ground-truth labels that arrive after the predictions.

kubeloop feedback import --spec kubeloop.yaml labels.csv
kubeloop feedback report --spec kubeloop.yaml --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kubeloop.pipelines.cli.common import JsonOption, SpecOption, print_json, user_errors

app = typer.Typer(
    help="Ground-truth labels: import them, report live quality per variant.",
    no_args_is_help=True,
)


def _model_kind(name: str, model: str | None) -> tuple[str, list[Any]]:
    """(task, classes) of the model labels are checked against (default: production)."""
    from kubeloop.components.register import registry

    info = registry.get(model or f"{name}:production")
    return info.labels.get("task", "regression"), list(info.metadata.get("classes") or [])


@app.command("import")
@user_errors
def import_command(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet: request_id, [row], label.")],
    spec: SpecOption = Path("kubeloop.yaml"),
    id_column: Annotated[str, typer.Option(help="Column of the request ids.")] = "request_id",
    row_column: Annotated[str, typer.Option(help="Column of row indexes (default 0).")] = "row",
    label_column: Annotated[str, typer.Option(help="Column of the true labels.")] = "label",
    model: Annotated[
        str | None, typer.Option(help="Model whose classes labels must be (default production).")
    ] = None,
) -> None:
    """Append labels to the label log, all or nothing (every row checked first)."""
    from kubeloop.components.core.spec import load_spec
    from kubeloop.serving.feedback.importer import Columns, import_labels

    loaded = load_spec(spec)
    task, classes = _model_kind(loaded.name, model)
    n = import_labels(
        file, loaded.feedback_dir, task, classes, Columns(id_column, row_column, label_column)
    )
    typer.echo(f"imported {n} label(s) from {file} into {loaded.feedback_dir}")


@app.command("report")
@user_errors
def report_command(spec: SpecOption = Path("kubeloop.yaml"), as_json: JsonOption = False) -> None:
    """Labelled rows and quality per variant and model (label log x prediction log)."""
    from rich.console import Console
    from rich.table import Table

    from kubeloop.components.core.spec import load_spec
    from kubeloop.serving.feedback.join import report

    out = report(load_spec(spec))
    if as_json:
        print_json(out)
        return
    table = Table("variant", "model", "task", "labelled", "quality")
    for v in out["variants"]:
        quality = ", ".join(f"{k} {val:.4f}" for k, val in v["metrics"].items())
        table.add_row(v["variant"], v["model"], v["task"], str(v["labelled"]), quality)
    console = Console()
    console.print(table)
    console.print(
        f"{out['labels']} labelled row(s), {out['unmatched']} without a logged prediction"
    )
