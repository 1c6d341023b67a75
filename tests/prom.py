"""A real Prometheus server for tests (Debian's ``/usr/bin/prometheus``).

    with PrometheusServer(tmp_path, targets=["127.0.0.1:8000"]) as prom:
        prom.wait_for_targets()
        prom.query("up")

or the ``prometheus`` fixture factory (:func:`prometheus_factory`). The server scrapes its
targets every second on 127.0.0.1, keeps its data in a temporary folder, and is killed when
the block (or the test) ends. ``--web.enable-lifecycle`` is on, so :meth:`set_targets`
rewrites the config and reloads it without a restart.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
import yaml

PROMETHEUS_BIN = "/usr/bin/prometheus"
SCRAPE_INTERVAL_S = 1.0
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A port nothing listens on right now (bind port 0, read it back, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusServer:
    """One Prometheus process with its own config, port and data folder."""

    def __init__(
        self,
        folder: Path,
        targets: Sequence[str] = (),
        *,
        scrape_interval_s: float = SCRAPE_INTERVAL_S,
        job: str = "kubeloop",
    ) -> None:
        if shutil.which(PROMETHEUS_BIN) is None:
            raise RuntimeError(f"{PROMETHEUS_BIN} is missing: apt-get install -y prometheus")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path = folder / "prometheus.yml"
        self.job = job
        self.scrape_interval_s = scrape_interval_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write_config(targets)

    # ---------------------------------------------------------------- lifecycle

    def _write_config(self, targets: Sequence[str]) -> None:
        interval = f"{self.scrape_interval_s:g}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self) -> PrometheusServer:
        log = open(self.folder / "prometheus.log", "wb")  # noqa: SIM115 (kept open for the process)
        self.proc = subprocess.Popen(
            [
                PROMETHEUS_BIN,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited at start-up: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {START_TIMEOUT_S} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 2000) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace")[-chars:] if path.is_file() else ""

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- targets

    def set_targets(self, targets: Sequence[str]) -> None:
        """Scrape these ``host:port`` targets from now on (config rewrite + /-/reload)."""
        self._write_config(targets)
        httpx.post(f"{self.url}/-/reload", timeout=10.0).raise_for_status()

    def wait_for_targets(self, timeout_s: float = 20.0) -> None:
        """Block until every configured target has been scraped successfully once."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            active = httpx.get(f"{self.url}/api/v1/targets", timeout=5.0).json()["data"]
            last = active["activeTargets"]
            if last and all(t["health"] == "up" for t in last):
                return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus targets not all up after {timeout_s} s: {last}")

    def wait_for_series(self, promql: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Block until `promql` returns a non-empty result; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.2)
        raise RuntimeError(f"no result for {promql!r} after {timeout_s} s")

    # ---------------------------------------------------------------- queries

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result list (vector elements, or one scalar as a list)."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10.0)
        body = reply.json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        data = body["data"]
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str) -> float | None:
        """The single number `promql` returns (None when the result is empty)."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise RuntimeError(f"query {promql!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    """Start real Prometheus servers: ``prometheus_factory(["host:port", ...])``; every server
    started is killed at teardown."""
    servers: list[PrometheusServer] = []

    def start(targets: Sequence[str] = ()) -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prometheus-{len(servers)}", targets)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
