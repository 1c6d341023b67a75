"""`kubeloop trigger`: the retrain trigger that Alertmanager's webhook calls."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubeloop.pipelines.cli.common import JsonOption, SpecOption, print_json, user_errors

app = typer.Typer(
    help="Retrain trigger: Alertmanager webhook -> retraining run -> gate -> canary.",
    no_args_is_help=True,
)


@app.command("serve")
@user_errors
def serve_command(
    spec: SpecOption = Path("kubeloop.yaml"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 9095,
    kfp_host: Annotated[
        str | None,
        typer.Option(help="Kubeflow Pipelines endpoint: retrain there instead of here."),
    ] = None,
    gateway: Annotated[
        str | None,
        typer.Option(help="Gateway URL for canary rollouts (default: serve.host:serve.port)."),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(help="Prometheus URL for canary analysis (default: monitor.prometheus_url)."),
    ] = None,
) -> None:
    """Receive Alertmanager webhooks on POST /alerts and start retraining runs.

    One run per alert episode (deduped by fingerprint), at most one run at a time, none
    within retrain.cooldown_s of the last and at most retrain.daily_budget a day; state in
    <workdir>/trigger/state.json survives restarts. Point an Alertmanager webhook receiver at
    http://HOST:PORT/alerts; /metrics serves kubeloop_retrain_* for Prometheus. A model that
    passes the gate starts a canary rollout (as `kubeloop rollout start --no-wait`); the
    rollout controller drives it."""
    from kubeloop.serving.trigger.server import build_trigger, serve

    trigger = build_trigger(spec, kfp_host=kfp_host, gateway_url=gateway, prometheus_url=prometheus)
    serve(trigger, host=host, port=port)


@app.command("status")
@user_errors
def status_command(spec: SpecOption = Path("kubeloop.yaml"), as_json: JsonOption = False) -> None:
    """Show the trigger's persisted state: pending requests and recent decisions."""
    from rich.console import Console
    from rich.table import Table

    from kubeloop.components.core.spec import load_spec
    from kubeloop.serving.trigger.state import StateStore

    loaded = load_spec(spec)
    state = StateStore(Path(loaded.workdir) / "trigger").load()
    rows = [r.model_dump(mode="json") for r in state.requests]
    if as_json:
        print_json({"requests": rows, "policy": loaded.retrain.model_dump(mode="json")})
        return
    table = Table("request", "status", "alerts", "run", "outcome", "decision")
    for r in state.requests[-20:]:
        alerts = ", ".join(sorted({a.name for a in r.alerts}))
        table.add_row(r.id, r.status, alerts, r.run_id or "", r.outcome or "", r.decision or "")
    Console().print(table)
