"""`kubeloop runs`: the pipeline run history under ``{workdir}/runs``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from kubeloop.pipelines.cli.common import JsonOption, SpecOption, print_json, user_errors

if TYPE_CHECKING:
    from kubeloop.components.tracking.store import RunRecord, RunStore

app = typer.Typer(
    help="Pipeline run history (records under the spec's workdir).", no_args_is_help=True
)
STATUS_COLOUR = {"succeeded": "green", "gate_failed": "yellow", "running": "cyan"}


def _store(spec_path: Path) -> RunStore:
    from kubeloop.components.core.spec import load_spec
    from kubeloop.components.tracking.store import RunStore

    return RunStore.for_spec(load_spec(spec_path))


def _console() -> Console:
    return Console(width=max(120, Console().width))


def _duration(rec: RunRecord) -> str:
    d = rec.duration_s
    return "-" if d is None else f"{d:.1f} s"


def _primary(rec: RunRecord) -> str:
    v = rec.primary_value
    return "-" if v is None else f"{rec.primary_metric} {v:.4f}"


def _status(rec: RunRecord) -> str:
    colour = STATUS_COLOUR.get(rec.status, "red")
    return f"[{colour}]{rec.status}[/]"


@app.command("list")
@user_errors
def list_runs(spec: SpecOption = Path("kubeloop.yaml"), as_json: JsonOption = False) -> None:
    """Runs of this project, newest first."""
    from rich.table import Table

    store = _store(spec)
    records = store.list()
    if as_json:
        print_json([r.model_dump(mode="json", exclude={"spec"}) for r in records])
        return
    if not records:
        Console().print(f"no runs yet in {store.root}")
        return
    table = Table("run id", "status", "started", "duration", "model tag", "primary metric")
    for r in records:
        table.add_row(
            r.run_id,
            _status(r),
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            _duration(r),
            r.model_tag or "-",
            _primary(r),
        )
    _console().print(table)


@app.command("show")
@user_errors
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    spec: SpecOption = Path("kubeloop.yaml"),
    as_json: JsonOption = False,
) -> None:
    """One run: status, lineage, metrics, gate, steps, artifacts, and how to re-run it."""
    from rich.table import Table

    store = _store(spec)
    rec = store.get(run_id)
    spec_copy = store.spec_path(rec.run_id)
    if as_json:
        print_json({**rec.model_dump(mode="json"), "spec_path": str(spec_copy)})
        return
    console = _console()
    grid = Table.grid(padding=(0, 2))
    grid.add_row("run", rec.run_id)
    grid.add_row("status", _status(rec))
    if rec.error:
        grid.add_row("error", escape(rec.error))
    grid.add_row("started", f"{rec.started_at:%Y-%m-%d %H:%M:%S %Z}")
    grid.add_row("duration", _duration(rec))
    grid.add_row("spec hash", rec.spec_hash)
    grid.add_row(
        "code",
        f"{rec.code_version.get('version')} (git {rec.code_version.get('git_commit') or 'n/a'})",
    )
    grid.add_row("data", rec.data_fingerprint or "-")
    grid.add_row("seeds", ", ".join(f"{k}={v}" for k, v in rec.seeds.items()))
    grid.add_row("params", ", ".join(f"{k}={v}" for k, v in rec.params.items()) or "-")
    grid.add_row("model", rec.model_tag or "[dim]not registered[/]")
    for m, v in sorted(rec.metrics.items()):
        grid.add_row(m, f"{v:.4f}" + (" (primary)" if m == rec.primary_metric else ""))
    if rec.gate is not None:
        grid.add_row("gate", "[green]passed[/]" if rec.gate.get("passed") else "[yellow]failed[/]")
        for reason in rec.gate.get("reasons", []):
            grid.add_row("", f"• {escape(reason)}")
    for step in rec.steps:
        grid.add_row(f"step {step.get('step')}", f"{step.get('status')} {step.get('seconds')} s")
    for name, path in rec.artifacts.items():
        grid.add_row(name, path)
    console.print(grid)
    console.print(f"re-run: kubeloop pipeline run --spec {spec_copy}", soft_wrap=True)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _compare_rows(a: RunRecord, b: RunRecord) -> list[tuple[str, str, Any, Any]]:
    """(section, key, a, b) for metrics and params (all), lineage and spec (differences)."""
    rows: list[tuple[str, str, Any, Any]] = []
    for section, da, db in (("metric", a.metrics, b.metrics), ("param", a.params, b.params)):
        for k in sorted(set(da) | set(db)):
            rows.append((section, k, da.get(k), db.get(k)))
    for k in ("status", "model_tag", "data_fingerprint", "spec_hash"):
        rows.append(("run", k, getattr(a, k), getattr(b, k)))
    fa, fb = _flatten(a.spec), _flatten(b.spec)
    for k in sorted(set(fa) | set(fb)):
        if fa.get(k) != fb.get(k):
            rows.append(("spec", k, fa.get(k), fb.get(k)))
    return rows


@app.command("compare")
@user_errors
def compare(
    run_a: Annotated[str, typer.Argument(help="First run id (or prefix).")],
    run_b: Annotated[str, typer.Argument(help="Second run id (or prefix).")],
    spec: SpecOption = Path("kubeloop.yaml"),
    as_json: JsonOption = False,
) -> None:
    """Metrics and parameters side by side (plus lineage and spec differences)."""
    from rich.table import Table

    store = _store(spec)
    a, b = store.get(run_a), store.get(run_b)
    rows = _compare_rows(a, b)
    if as_json:
        print_json(
            {
                "runs": [a.run_id, b.run_id],
                "rows": [{"section": s, "key": k, "a": va, "b": vb} for s, k, va, vb in rows],
            }
        )
        return

    def fmt(v: Any) -> str:
        return escape("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))

    table = Table("", "", a.run_id, b.run_id, "Δ (b - a)")
    for section, key, va, vb in rows:
        numeric = isinstance(va, int | float) and isinstance(vb, int | float)
        delta = f"{vb - va:+.4f}" if numeric and section == "metric" else ""
        shown_b = fmt(vb) if va == vb else f"[bold]{fmt(vb)}[/]"
        table.add_row(section, key, fmt(va), shown_b, delta)
    _console().print(table)
