"""`kubeloop monitor`: Prometheus and Alertmanager for the embedded (one machine) setup."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kubeloop.pipelines.cli.common import SpecOption, user_errors

app = typer.Typer(
    help="Prometheus + Alertmanager on one machine: configs for kubeloop's rules and services.",
    no_args_is_help=True,
)


@app.command("config")
@user_errors
def config_command(
    spec: SpecOption = Path("kubeloop.yaml"),
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the three files (created).")
    ] = Path("monitoring"),
    trigger_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port of `kubeloop trigger serve`.")
    ] = 9095,
    alertmanager_port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port Alertmanager will listen on.")
    ] = 9093,
) -> None:
    """Write prometheus.yml, alertmanager.yml and rules.yaml for this project.

    Prometheus scrapes the gateway (serve.host:serve.port) and the retrain trigger every
    5 s and evaluates kubeloop's rules; Alertmanager sends the alerts labelled
    action=retrain to the trigger's /alerts. The commands that start both are printed;
    Prometheus listens where monitor.prometheus_url points (canary analysis reads it)."""
    from urllib.parse import urlparse

    from rich.console import Console

    from kubeloop.components.core.spec import load_spec
    from kubeloop.serving.monitoring.config import write_local_configs

    loaded = load_spec(spec)
    # A gateway listening on every interface is scraped on loopback.
    host = "127.0.0.1" if loaded.serve.host in ("0.0.0.0", "::") else loaded.serve.host
    configs = write_local_configs(
        out.resolve(),  # prometheus.yml names rules.yaml by path: absolute, from anywhere
        targets={
            "gateway": [f"{host}:{loaded.serve.port}"],
            "trigger": [f"127.0.0.1:{trigger_port}"],
        },
        trigger_url=f"http://127.0.0.1:{trigger_port}/alerts",
        alertmanager=f"127.0.0.1:{alertmanager_port}",
    )
    prometheus = urlparse(loaded.monitor.prometheus_url).netloc or "127.0.0.1:9090"
    folder = configs.prometheus.parent
    console = Console()
    console.print(f"wrote {configs.prometheus}, {configs.alertmanager} and {configs.rules}")
    console.print("start them (Debian: apt-get install prometheus prometheus-alertmanager):")
    console.print(
        f"  prometheus --config.file={configs.prometheus} "
        f"--storage.tsdb.path={folder / 'prometheus-data'} --web.listen-address={prometheus}",
        soft_wrap=True,
    )
    console.print(
        f"  prometheus-alertmanager --config.file={configs.alertmanager} "
        f"--storage.path={folder / 'alertmanager-data'} "
        f"--web.listen-address=127.0.0.1:{alertmanager_port} --cluster.listen-address=",
        soft_wrap=True,
    )
