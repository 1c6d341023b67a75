"""The demo's processes: Prometheus, Alertmanager, the gateway, the retrain trigger and the
rollout controller, each a child process with its log under ``<demo>/logs/``.

Prometheus and Alertmanager are the Debian packages' binaries (``prometheus``,
``prometheus-alertmanager``; elsewhere the upstream release tarballs, see the README) with
configs from :func:`kubeloop.serving.monitoring.config.write_local_configs`: the packaged
rules, scrapes every 2 s and Alertmanager timings of seconds instead of minutes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from kubeloop.components.core.errors import KubeloopError
from kubeloop.pipelines.demo.project import Project

PROMETHEUS = ("prometheus",)
ALERTMANAGER = ("prometheus-alertmanager", "alertmanager")
START_TIMEOUT_S = 180.0
KUBELOOP = [sys.executable, "-c", "from kubeloop.pipelines.cli.main import app; app()"]


def find_binary(names: tuple[str, ...], package: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise KubeloopError(
        f"{names[0]} not found on PATH: install it (Debian/Ubuntu: `apt-get install "
        f"{package}`; elsewhere the release tarball from prometheus.io/download)"
    )


@dataclass
class Service:
    """One child process, its log and the URL that answers once it is ready."""

    name: str
    cmd: list[str]
    log: Path
    ready_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # Ctrl-C reaches the demo, which stops us in order
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise KubeloopError(
                f"{self.name} exited with {self.proc.returncode}; last lines of {self.log}:\n{tail}"
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if self.ready_url is None:  # nothing to ask: alive is all we can check
            self.check_alive()
            return
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise KubeloopError(
                    f"{self.name} did not answer {self.ready_url} within {timeout_s:.0f} s "
                    f"(log: {self.log})"
                )
            time.sleep(0.5)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # the whole group: bentoml's workers too
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Stack:
    """Start the services in dependency order; stop them in reverse."""

    def __init__(self, project: Project, env: Mapping[str, str]) -> None:
        self.project = project
        self.env = dict(env)
        self.services: list[Service] = []

    def _service(self, name: str, cmd: list[str], ready_url: str | None) -> Service:
        return Service(name, cmd, self.project.logs / f"{name}.log", ready_url, self.env)

    def monitoring(self) -> list[Service]:
        from kubeloop.serving.monitoring.config import Timings, write_local_configs

        p, folder = self.project.ports, self.project.monitoring
        configs = write_local_configs(
            folder,
            targets={
                "gateway": [f"127.0.0.1:{p.gateway}"],
                "trigger": [f"127.0.0.1:{p.trigger}"],
            },
            trigger_url=f"http://127.0.0.1:{p.trigger}/alerts",
            alertmanager=f"127.0.0.1:{p.alertmanager}",
            scrape_interval_s=2.0,
            evaluation_interval_s=2.0,
            timings=Timings(group_wait_s=2.0, group_interval_s=10.0, repeat_interval_s=3600.0),
        )
        prometheus = self._service(
            "prometheus",
            [
                find_binary(PROMETHEUS, "prometheus"),
                f"--config.file={configs.prometheus}",
                f"--storage.tsdb.path={folder / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{p.prometheus}",
            ],
            f"http://127.0.0.1:{p.prometheus}/-/ready",
        )
        alertmanager = self._service(
            "alertmanager",
            [
                find_binary(ALERTMANAGER, "prometheus-alertmanager"),
                f"--config.file={configs.alertmanager}",
                f"--storage.path={folder / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{p.alertmanager}",
                "--cluster.listen-address=",
            ],
            f"http://127.0.0.1:{p.alertmanager}/-/ready",
        )
        return [prometheus, alertmanager]

    def loop(self) -> list[Service]:
        spec, p = str(self.project.spec), self.project.ports
        return [
            self._service(
                "gateway",
                [*KUBELOOP, "serve", "--spec", spec],
                f"http://127.0.0.1:{p.gateway}/readyz",
            ),
            self._service(
                "trigger",
                [*KUBELOOP, "trigger", "serve", "--spec", spec, "--port", str(p.trigger)],
                f"http://127.0.0.1:{p.trigger}/healthz",
            ),
            self._service("controller", [*KUBELOOP, "rollout", "controller", "--spec", spec], None),
        ]

    def start(self, services: list[Service]) -> None:
        for service in services:  # all start at once; then each is waited for
            service.start()
            self.services.append(service)
        for service in services:
            service.wait_ready()

    def check_alive(self) -> None:
        for service in self.services:
            service.check_alive()

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
