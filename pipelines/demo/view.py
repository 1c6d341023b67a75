"""The demo's terminal view (rich): the loop's state while it runs, the timeline at the end."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from kubeloop.pipelines.demo.traffic import TrafficStats
from kubeloop.pipelines.demo.watch import Event, Snapshot


def _clock(at: float, onset: float | None) -> str:
    """Wall-clock time, and minutes:seconds since the drift onset once there is one."""
    text = datetime.fromtimestamp(at).strftime("%H:%M:%S")
    if onset is None or at < onset:
        return text
    minutes, seconds = divmod(int(at - onset), 60)
    return f"{text}  +{minutes}:{seconds:02d}"


def event_line(event: Event, onset: float | None) -> str:
    link = f"  ({event.link})" if event.link else ""
    return f"{_clock(event.at, onset)}  {event.what}{link}"


def timeline_table(events: list[Event], onset: float | None) -> Table:
    table = Table("time  (since drift onset)", "event", "record", box=None, pad_edge=False)
    for e in events:
        table.add_row(_clock(e.at, onset), e.what, e.link or "")
    return table


def _rollout(rollout: dict[str, Any] | None) -> str:
    if rollout is None:
        return "none"
    steps = rollout["serve"]["canary_steps"]
    marks = " → ".join(
        f"[bold]{w}%[/]" if i == rollout["step"] else f"{w}%" for i, w in enumerate(steps)
    )
    last = rollout["analyses"][-1] if rollout.get("analyses") else None
    analysis = f"  last analysis: {last['verdict']} ({last['reason']})" if last else ""
    colour = {"promoted": "green", "rolled_back": "red"}.get(rollout["phase"], "yellow")
    return (
        f"{rollout['stable']} → {rollout['canary']}  [{colour}]{rollout['phase']}[/]  "
        f"{marks}{analysis}"
    )


def _retraining(snap: Snapshot) -> str:
    request = snap.request
    if request is None:
        return "idle (waiting for an alert)"
    text = f"request {request['id']}: {request['status']}"
    if request.get("outcome"):
        text += f" → {request['outcome']}"
    run = snap.run
    if run is not None:
        done = [s["step"] for s in run.get("steps", [])]
        text += f"  run {run['run_id']} {run['status']}"
        if run["status"] == "running" and done:
            text += f" (done: {', '.join(done[-3:])})"
    return text


def live_view(
    stage: str,
    snap: Snapshot,
    traffic: TrafficStats | None,
    phase: str | None,
    events: list[Event],
    onset: float | None,
) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row("stage", stage)
    grid.add_row("serving", snap.production or "-")
    if traffic is not None:
        by_variant = ", ".join(f"{v} {n}" for v, n in sorted(traffic.by_variant().items()))
        grid.add_row(
            "traffic",
            f"{phase} period: {traffic.sent} requests ({by_variant or 'none answered yet'}; "
            f"{traffic.failed()} failed), {traffic.labels_posted} labels posted",
        )
    if snap.drifted is None:
        drift = "no check yet (the window fills first)"
    else:
        verdict = "[red]DRIFT[/]" if snap.drifted else "[green]ok[/]"
        top = ", ".join(f"{f} {v:.2f}" for f, v in snap.top_drift)
        drift = f"{verdict} over {snap.window_rows or 0:.0f} rows; top PSI: {top}"
    grid.add_row("drift (stable)", drift)
    alerts = ", ".join(f"{name} [{state}]" for name, state in sorted(snap.alerts.items()))
    grid.add_row("alerts", alerts or "none")
    grid.add_row("retraining", _retraining(snap))
    grid.add_row("rollout", _rollout(snap.rollout))
    for error in snap.errors:
        grid.add_row("[yellow]note[/]", error)
    recent = timeline_table(events[-8:], onset)
    return Group(Panel(grid, title="kubeloop demo — the loop, live"), recent)
