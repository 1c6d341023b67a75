"""`kubeloop predict`: batch-score a CSV or Parquet file with a registered model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from kubeloop.pipelines.cli.common import JsonOption, print_json, user_errors

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from kubeloop.components.predict.task import ChunkDone


class _ChunkReporter:
    """A progress bar over rows on a terminal (when the file says how many); one plain line
    per chunk otherwise, which reads better in CI and Kubernetes job logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task_id: TaskID | None = None
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )

    def __call__(self, done: ChunkDone) -> None:
        if self.progress is None:
            of = f" of {done.total_rows:,}" if done.total_rows is not None else ""
            self.console.print(
                f"chunk {done.index}: {done.rows:,} rows scored ({done.rows_done:,}{of} so far)",
                highlight=False,
            )
            return
        if self.task_id is None:
            self.progress.start()
            self.task_id = self.progress.add_task("score", total=done.total_rows)
        self.progress.update(self.task_id, completed=done.rows_done)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@user_errors
def predict_command(
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="Model tag (name:version, name:latest, name:production) or a bare stage "
            "(production, candidate) together with --name.",
        ),
    ],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or Parquet file to score.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write the scores (.csv or .parquet, by suffix)."
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Model name, for a bare --model stage.")
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows read, scored and written at a time.")
    ] = 50_000,
    as_json: JsonOption = False,
) -> None:
    """Score a CSV or Parquet file with a registered model, streaming it in chunks.

    The output holds the input columns plus `prediction`, `probability_<class>`
    (classification) and `model`; it appears only once every row is scored."""
    from kubeloop.components.predict.task import score_file

    reporter = _ChunkReporter(Console(stderr=True))
    try:
        result = score_file(
            model,
            str(input),
            str(output),
            chunk_rows=chunk_rows,
            name=name,
            on_chunk=reporter,
        )
    finally:
        reporter.stop()
    if as_json:
        print_json(result.model_dump(mode="json"))
        return
    Console().print(
        f"scored {result.rows:,} rows in {result.chunks} chunk(s) with {result.model_tag}: "
        f"{result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s) → {result.output_path}",
        highlight=False,
        soft_wrap=True,
    )
