"""A real Alertmanager for tests (Debian's ``/usr/bin/prometheus-alertmanager``), a real
Prometheus started with a given config file (the generated one), and an in-process uvicorn
server for ASGI apps that Alertmanager calls back.

    with AlertmanagerServer(tmp_path, config_path) as am:
        am.post_alerts([{"labels": {"alertname": "X"}}])

Alertmanager listens on a free 127.0.0.1 port with its storage in the test's folder and HA
clustering off (it would bind 0.0.0.0:9094 otherwise); it is killed when the block ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _ServerProcess:
    """One server process on a free 127.0.0.1 port with its data in `folder`; ready when
    ``GET /-/ready`` answers 200; killed on exit."""

    binary = ""
    package = ""

    def __init__(self, folder: Path, config_path: Path) -> None:
        if shutil.which(self.binary) is None:
            raise RuntimeError(f"{self.binary} is missing: apt-get install -y {self.package}")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = config_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        log = open(self.folder / "server.log", "wb")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(
            [self.binary, *self.args()], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited at start-up: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.binary} not ready after {START_TIMEOUT_S} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        path = self.folder / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def get(self, path: str, **params: str) -> Any:
        reply = httpx.get(f"{self.url}{path}", params=params, timeout=10.0)
        reply.raise_for_status()
        return reply.json()


class PrometheusServer(_ServerProcess):
    """Prometheus with a given config file (e.g. the generated ``prometheus.yml``)."""

    binary = "/usr/bin/prometheus"
    package = "prometheus"

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]


class AlertmanagerServer(_ServerProcess):
    """Alertmanager with a given config, HA clustering off (it binds 0.0.0.0:9094 else)."""

    binary = ALERTMANAGER_BIN
    package = "prometheus-alertmanager"

    def args(self) -> list[str]:
        return [
            f"--config.file={self.config_path}",
            f"--storage.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus does (startsAt defaults to now)."""
        now = datetime.now(UTC).isoformat()
        body = [{"startsAt": now, "annotations": {}, **a} for a in alerts]
        reply = httpx.post(f"{self.url}/api/v2/alerts", json=body, timeout=10.0)
        reply.raise_for_status()

    def alerts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v2/alerts")
        return result


class UvicornThread:
    """Serve an ASGI app on 127.0.0.1:`port` from a thread (lifespan included)."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
