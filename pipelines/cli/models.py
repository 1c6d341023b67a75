"""`kubeloop models`: the registered models in the BentoML model store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from kubeloop.pipelines.cli.common import JsonOption, print_json, user_errors

if TYPE_CHECKING:
    from kubeloop.components.register.registry import ModelInfo

app = typer.Typer(
    help="Registered models (BentoML model store at $BENTOML_HOME/models).",
    no_args_is_help=True,
)


def _primary(info: ModelInfo) -> str:
    value = info.primary_value
    return f"{info.primary_metric} {value:.4f}" if value is not None else "-"


@app.command("list")
@user_errors
def list_models(
    name: Annotated[str | None, typer.Option("--name", "-n", help="Only this model.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Registered models, newest first."""
    from rich.table import Table

    from kubeloop.components.register import registry

    infos = registry.list_models(name)
    if as_json:
        print_json([i.model_dump(mode="json") for i in infos])
        return
    if not infos:
        Console().print(f"no registered models in {registry.store_home() / 'models'}")
        return
    table = Table("tag", "stage", "primary metric", "created")
    for i in infos:
        colour = {"production": "green", "failed": "red", "archived": "dim"}.get(i.stage, "")
        table.add_row(
            i.tag,
            f"[{colour}]{i.stage}[/]" if colour else i.stage,
            _primary(i),
            f"{i.created_at:%Y-%m-%d %H:%M:%S}",
        )
    Console(width=max(120, Console().width)).print(table)


def _files(root: Path) -> list[dict[str, Any]]:
    return [
        {"path": str(p.relative_to(root)), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]


@app.command("show")
@user_errors
def show(
    tag: Annotated[str, typer.Argument(help="name:version, name, name:latest or name:<stage>.")],
    as_json: JsonOption = False,
) -> None:
    """Metadata, metrics, files and model card of one model."""
    from rich.table import Table

    from kubeloop.components.register import registry

    info = registry.get(tag)
    root = Path(info.path)
    files = _files(root)
    card = root / "model_card.md"
    if as_json:
        print_json(
            {
                **info.model_dump(mode="json"),
                "files": files,
                "model_card": str(card) if card.is_file() else None,
            }
        )
        return
    console = Console(width=max(120, Console().width))
    grid = Table.grid(padding=(0, 2))
    grid.add_row("tag", info.tag)
    grid.add_row("stage", info.stage)
    grid.add_row("created", f"{info.created_at:%Y-%m-%d %H:%M:%S %Z}")
    grid.add_row("primary", _primary(info))
    for key in (
        "threshold",
        "data_fingerprint",
        "spec_hash",
        "run_id",
        "feature_service",
        "label",
        "classes",
        "features",
    ):
        if key in info.metadata:
            grid.add_row(key, str(info.metadata[key]))
    grid.add_row("path", info.path)
    console.print(grid)
    metrics = Table("metric", "value")
    for m, v in info.metrics.items():
        metrics.add_row(m, f"{v:.4f}")
    console.print(metrics)
    console.print("files: " + ", ".join(f["path"] for f in files if "/" not in f["path"]))
    if card.is_file():
        console.print(f"model card: {card}")


@app.command("stage")
@user_errors
def set_stage(
    tag: Annotated[str, typer.Argument(help="Model tag.")],
    stage: Annotated[
        str, typer.Argument(help="candidate | production | previous | failed | archived")
    ],
) -> None:
    """Move a model to a stage (promoting demotes the current production to previous)."""
    from kubeloop.components.register import registry

    info = registry.set_stage(tag, stage)
    Console().print(f"{info.tag} is now {info.stage}")
