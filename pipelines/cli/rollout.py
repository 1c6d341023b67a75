"""`kubeloop rollout`: canary rollouts driven by Prometheus analysis."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.table import Table

from kubeloop.pipelines.cli.common import JsonOption, SpecOption, print_json, user_errors

if TYPE_CHECKING:
    from kubeloop.components.core.spec import Spec
    from kubeloop.serving.rollout.controller import Controller
    from kubeloop.serving.rollout.state import RolloutState

RULES = "\n\n".join(
    [
        "Canary rollouts: a candidate model takes a growing share of the gateway's traffic, "
        "step by step (serve.canary_steps, e.g. 5 → 10 → 25 → 50 → 100 %).",
        "Each step is held serve.interval_s, then analysed over that window through the "
        "Prometheus HTTP API (monitor.prometheus_url): the checks of serve.analysis "
        "(success_rate, latency_p99_ratio canary/stable, prediction_psi, extra PromQL).",
        "Too few requests (serve.min_requests per variant): insufficient-data; the weight is "
        "held and re-analysed, never counted as a pass. Nothing conclusive for "
        "serve.deadline_s: rolled back (the canary stays a candidate).",
        "More failed analyses than serve.failure_limit: weight 0 at once, canary marked "
        "failed in the registry.",
        "Every step passed: promoted (registry: canary -> production, old production -> "
        "previous; the gateway serves the canary).",
        "Prometheus or the gateway unreachable: hold and retry, never promote blind.",
        "Every promote, rollback and abort writes a decision record (`rollout history`).",
        "State lives in <workdir>/rollouts/ and survives restarts: `kubeloop rollout "
        "controller` resumes (no double promotion, no lost rollback).",
        "The admin token is read from the variable named by serve.admin_token_env. Exit codes "
        "of `start` and `controller --until-done`: 0 promoted, 3 rolled back, 1 error.",
    ]
)

EXIT_ROLLED_BACK = 3

app = typer.Typer(help=RULES, no_args_is_help=True)
err_console = Console(stderr=True)

GatewayOption = Annotated[
    str | None,
    typer.Option(help="Gateway URL (default: http://<serve.host>:<serve.port>)."),
]
PrometheusOption = Annotated[
    str | None, typer.Option(help="Prometheus URL (default: monitor.prometheus_url).")
]
DEFAULT_SPEC = Path("kubeloop.yaml")


def _spec(path: Path) -> Spec:
    from kubeloop.components.core.spec import load_spec

    return load_spec(path)


def _controller(spec: Spec, gateway: str | None, prometheus: str | None) -> Controller:
    from kubeloop.serving.rollout.controller import Controller
    from kubeloop.serving.rollout.gateway_client import GatewayClient
    from kubeloop.serving.rollout.prometheus import PrometheusClient

    serve = spec.serve
    return Controller(
        spec,
        gateway=GatewayClient(
            gateway or f"http://{serve.host}:{serve.port}", serve.admin_token_env
        ),
        prometheus=PrometheusClient(prometheus or spec.monitor.prometheus_url),
    )


def _load(spec: Spec) -> RolloutState:
    from kubeloop.components.core.errors import KubeloopError
    from kubeloop.serving.rollout.state import StateStore

    state = StateStore(spec.rollouts_dir).load()
    if state is None:
        raise KubeloopError(
            f"no rollout in {spec.rollouts_dir}: start one with "
            "`kubeloop rollout start --canary TAG`"
        )
    return state


def _view(state: RolloutState | None) -> Group | str:
    """Rollout, step, weight and the latest analysis, as rich renderables."""
    if state is None:
        return "no rollout yet"
    colour = {"promoted": "green", "rolled_back": "red"}.get(state.phase, "yellow")
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("rollout", state.rollout_id)
    head.add_row("stable → canary", f"{state.stable} → {state.canary}")
    head.add_row("phase", f"[{colour}]{state.phase}[/]")
    steps = " → ".join(
        f"[bold]{w}%[/]" if i == state.step else f"{w}%" for i, w in enumerate(state.steps)
    )
    head.add_row("step", f"{state.step + 1}/{len(state.steps)}: {steps}")
    head.add_row("canary weight", f"{state.weight:g}%")
    head.add_row("failed analyses", f"{state.failures} (limit {state.serve.failure_limit})")
    if state.pending is not None:
        head.add_row("decision", f"{state.pending.outcome} ({state.pending.trigger})")
        head.add_row("reason", state.pending.reason)
    if state.last_error:
        head.add_row("last error", f"[red]{state.last_error}[/]")
    if state.decision_file:
        head.add_row("decision record", state.decision_file)
    last = state.last_analysis
    if last is None:
        return Group(head)
    head.add_row("analysis", f"{last.verdict} at {last.at:%H:%M:%S} ({last.window}): {last.reason}")
    checks = Table("check", "value", "bounds", "result")
    for c in last.checks:
        bounds = " ".join(
            b
            for b in (
                f">= {c.min:g}" if c.min is not None else "",
                f"<= {c.max:g}" if c.max is not None else "",
            )
            if b
        )
        result = {True: "[green]pass[/]", False: "[red]fail[/]", None: "[yellow]no data[/]"}
        value = "-" if c.value is None else f"{c.value:.4g}"
        checks.add_row(c.name, value, bounds, result[c.passed])
    return Group(head, checks)


def _exit_for(state: RolloutState | None) -> None:
    if state is not None and state.phase == "rolled_back":
        raise typer.Exit(EXIT_ROLLED_BACK)


def _follow(ctrl: Controller, until_done: bool, quiet: bool) -> RolloutState | None:
    """Run the controller; with a live view on a terminal, else one log line per change."""
    if quiet or not Console().is_terminal:
        last: list[str] = []

        def log(state: RolloutState | None) -> None:
            line = "" if state is None else _line(state)
            if line and line != (last[-1] if last else None):
                last.append(line)
                Console().print(line, highlight=False, soft_wrap=True)

        return ctrl.run(until_done=until_done, on_tick=log)
    from rich.live import Live

    with Live(_view(None), refresh_per_second=4, transient=False) as live:
        return ctrl.run(until_done=until_done, on_tick=lambda s: live.update(_view(s)))


def _line(state: RolloutState) -> str:
    last = state.last_analysis
    analysis = f" | {last.verdict}: {last.reason}" if last else ""
    return (
        f"{state.rollout_id} {state.phase} step {state.step + 1}/{len(state.steps)} "
        f"weight {state.weight:g}%{analysis}"
    )


@app.command("start")
@user_errors
def start(
    canary: Annotated[str, typer.Option("--canary", help="Candidate model tag to roll out.")],
    spec: SpecOption = DEFAULT_SPEC,
    stable: Annotated[
        str | None, typer.Option(help="Stable model (default: <name>:production).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Run the controller here until the rollout ends (default), or only start it "
            "and leave the rest to `kubeloop rollout controller`.",
        ),
    ] = True,
    gateway: GatewayOption = None,
    prometheus: PrometheusOption = None,
    quiet: Annotated[bool, typer.Option(help="Log lines instead of the live view.")] = False,
) -> None:
    """Start rolling out a candidate model.

    The canary is loaded in the gateway at the first step's weight.

    Then (unless --no-wait) the controller runs here: exit 0 promoted, 3 rolled back.
    """
    loaded = _spec(spec)
    ctrl = _controller(loaded, gateway, prometheus)
    state = ctrl.start(canary, stable=stable)
    Console().print(_line(state), highlight=False, soft_wrap=True)
    if not wait:
        return
    final = _follow(ctrl, until_done=True, quiet=quiet)
    if final is not None:
        Console().print(_view(final))
    _exit_for(final)


@app.command("controller")
@user_errors
def controller(
    spec: SpecOption = DEFAULT_SPEC,
    until_done: Annotated[
        bool, typer.Option(help="Exit when the rollout ends (0 promoted, 3 rolled back).")
    ] = False,
    gateway: GatewayOption = None,
    prometheus: PrometheusOption = None,
) -> None:
    """Run the reconcile loop (a Deployment, or after a restart).

    It resumes the rollout in <workdir>/rollouts/ and waits for the next (or --until-done).
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    loaded = _spec(spec)
    ctrl = _controller(loaded, gateway, prometheus)
    final = _follow(ctrl, until_done=until_done, quiet=True)
    _exit_for(final)


@app.command("status")
@user_errors
def status(spec: SpecOption = DEFAULT_SPEC, as_json: JsonOption = False) -> None:
    """Show the current (or last) rollout: phase, step, weight, latest analysis."""
    state = _load(_spec(spec))
    if as_json:
        print_json(state.model_dump(mode="json"))
        return
    Console(width=max(120, Console().width)).print(_view(state))


def _manual(
    spec: Path, gateway: str | None, prometheus: str | None, action: str, reason: str
) -> None:
    loaded = _spec(spec)
    ctrl = _controller(loaded, gateway, prometheus)
    state = ctrl.promote_now(reason) if action == "promote" else ctrl.abort(reason)
    Console().print(_view(state))
    if not state.terminal:
        err_console.print(
            "[red]error:[/] the decision is recorded but not yet carried out "
            f"({state.last_error}); `kubeloop rollout controller` (or running this again) "
            "completes it",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


ReasonOption = Annotated[str, typer.Option(help="Why (goes into the decision record).")]


@app.command("promote")
@user_errors
def promote(
    spec: SpecOption = DEFAULT_SPEC,
    reason: ReasonOption = "",
    gateway: GatewayOption = None,
    prometheus: PrometheusOption = None,
) -> None:
    """Promote the canary now, skipping the remaining steps (with a decision record)."""
    _manual(spec, gateway, prometheus, "promote", reason)


@app.command("abort")
@user_errors
def abort(
    spec: SpecOption = DEFAULT_SPEC,
    reason: ReasonOption = "",
    gateway: GatewayOption = None,
    prometheus: PrometheusOption = None,
) -> None:
    """Roll back now: canary weight 0 and unloaded, with a decision record.

    The canary keeps its registry stage (an abort is no verdict on the model).
    """
    _manual(spec, gateway, prometheus, "abort", reason)


@app.command("history")
@user_errors
def history(spec: SpecOption = DEFAULT_SPEC, as_json: JsonOption = False) -> None:
    """List the decision records of every promote, rollback and abort, oldest first."""
    from kubeloop.serving.rollout.state import StateStore

    loaded = _spec(spec)
    records = StateStore(loaded.rollouts_dir).decisions()
    if as_json:
        print_json([{"file": str(p), **r.model_dump(mode="json")} for p, r in records])
        return
    if not records:
        Console().print(f"no decision records in {loaded.rollouts_dir / 'decisions'}")
        return
    table = Table("decided (UTC)", "outcome", "trigger", "canary", "stable", "step", "reason")
    for _path, r in records:
        colour = "green" if r.outcome == "promoted" else "red"
        table.add_row(
            f"{r.decided_at:%Y-%m-%d %H:%M:%S}",
            f"[{colour}]{r.outcome}[/]",
            r.trigger,
            r.canary,
            r.stable,
            f"{r.step}/{len(r.steps)} ({r.weight:g}%)",
            r.reason,
        )
    Console(width=max(160, Console().width)).print(table)
