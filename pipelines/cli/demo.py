"""`kubeloop demo`: the whole loop live on this machine."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubeloop.components.core.errors import KubeloopError
from kubeloop.pipelines.cli.common import JsonOption, print_json, user_errors

EXIT_ROLLED_BACK = 3  # as `kubeloop rollout start`


def _check_free(port: int, what: str, option: str) -> int:
    with socket.socket() as s:
        # As servers bind: connections of a previous run waiting in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise KubeloopError(
                f"port {port} ({what}) is in use on 127.0.0.1: stop what listens there or "
                f"pass {option} PORT"
            ) from None
    return port


@user_errors
def demo_command(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Demo folder: data, spec, state, logs.")
    ] = Path(".kubeloop-demo"),
    rows: Annotated[int, typer.Option(min=2000, help="Rows per period of demo data.")] = 10000,
    seed: Annotated[int, typer.Option(help="Random seed of the demo data.")] = 0,
    steady: Annotated[
        float, typer.Option(min=0, help="Seconds of held-out traffic before the drift starts.")
    ] = 45.0,
    rate: Annotated[float, typer.Option(min=1, help="Requests per second to replay.")] = 40.0,
    timeout: Annotated[
        float, typer.Option(min=60, help="Give up this many seconds after the drift onset.")
    ] = 900.0,
    gateway_port: Annotated[int, typer.Option(min=1, max=65535, help="Gateway port.")] = 3000,
    prometheus_port: Annotated[int, typer.Option(min=1, max=65535, help="Prometheus port.")] = 9090,
    alertmanager_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Alertmanager port.")
    ] = 9093,
    trigger_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Retrain trigger port.")
    ] = 9095,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="Leave Prometheus, Alertmanager, gateway and trigger up afterwards (Ctrl-C).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run the closed loop on this machine and watch it live.

    Trains the first model on the demo data and puts it in production, starts Prometheus
    and Alertmanager (Debian: apt-get install prometheus prometheus-alertmanager) with
    kubeloop's rules, the gateway, the retrain trigger and the rollout controller, replays
    held-out traffic with its labels, then switches to the drifted period. From there the
    loop runs itself: drift checks, alert, retraining, evaluation gate, canary, promotion.

    Ends with a timeline (also in OUT/timeline.json) and links to the run report and the
    decision records. Exit 0 when the retrained model was promoted, 3 when its canary was
    rolled back, 1 otherwise. Models go to OUT/bentoml (BENTOML_HOME), not your store."""
    from kubeloop.pipelines.demo.loop import DemoResult, Options, run_demo
    from kubeloop.pipelines.demo.project import Ports
    from kubeloop.pipelines.demo.view import event_line, timeline_table

    if len({gateway_port, prometheus_port, alertmanager_port, trigger_port}) < 4:
        raise KubeloopError("the four ports must differ")
    ports = Ports(
        gateway=_check_free(gateway_port, "gateway", "--gateway-port"),
        prometheus=_check_free(prometheus_port, "Prometheus", "--prometheus-port"),
        alertmanager=_check_free(alertmanager_port, "Alertmanager", "--alertmanager-port"),
        trigger=_check_free(trigger_port, "retrain trigger", "--trigger-port"),
    )
    console = Console(stderr=as_json)
    options = Options(
        rows=rows,
        seed=seed,
        steady_s=steady,
        rate=rate,
        timeout_s=timeout,
        keep_running=keep_running,
    )

    def report(result: DemoResult) -> None:
        if as_json:
            print_json(result.to_json())
            return
        console.rule("timeline")
        if console.is_terminal:
            console.print(timeline_table(result.events, result.onset_at))
        else:  # a log: one line per event, links unwrapped
            for event in result.events:
                console.print(event_line(event, result.onset_at), highlight=False, soft_wrap=True)
        if result.seconds_to_promotion is not None:
            minutes, seconds = divmod(round(result.seconds_to_promotion), 60)
            console.print(f"drift onset → promoted retrained model: {minutes} min {seconds} s")
        console.print(f"{result.outcome}: {result.reason}")
        console.print(f"timeline: {result.timeline}")
        console.print(
            f"the demo's models: BENTOML_HOME={out.resolve() / 'bentoml'} kubeloop models list",
            soft_wrap=True,
        )

    result = run_demo(out, ports, options, console, report)
    if result.outcome == "rolled_back":
        raise typer.Exit(EXIT_ROLLED_BACK)
    if result.outcome != "promoted":
        raise typer.Exit(1)
