"""The chart's pods, run in Docker with their rendered settings (podrun.py): the stable and
canary variants, the gateway in remote mode and the retrain trigger start on the real serving
image under the restricted security context (read-only root, uid 10001, no capabilities), pass their
readiness probes, and the gateway answers /predict through the variant Services by name.

The serving image is built first with `make images` (layers and wheels cached; only the
project wheel is rebuilt), so the pods run the code of this checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kubeloop.serving import metrics
from tests.k8s.chart import REPO, Rendered, render
from tests.k8s.dashboards import promql
from tests.k8s.podrun import Pod, PodRunner, start_dockerd

# One worker with test_images.py: both build the images (cached after the first build).
pytestmark = pytest.mark.xdist_group("images")

TOKEN = "pod-test-admin-token"
VALUES = {
    # No Redis image can be pulled here, so no feature server. The trigger runs (it calls its
    # KFP host only when an alert arrives), and so does the controller, against a Prometheus
    # that runs beside the pods (Debian's binary in a container) under the name "prometheus".
    "feast": {"enabled": False},
    "redis": {"enabled": False},
    "prometheus": {"url": "http://prometheus:9090"},
}
# What the ServiceMonitor would make Prometheus scrape: each Service's metrics port.
SCRAPED = ("kubeloop-gateway:3000", "kubeloop-stable:3000", "kubeloop-canary:3000")


class PrometheusClient:
    """Queries to the in-network Prometheus through its published port."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for_series(self, promql: str, timeout_s: float = 90.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if result := self.query(promql):
                    return result
            time.sleep(0.5)
        raise AssertionError(f"no result for {promql!r} after {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def dockerd() -> Iterator[None]:
    started = start_dockerd()
    yield
    if started is not None:
        started.terminate()
        started.wait(timeout=60)


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return render(VALUES)


@pytest.fixture(scope="module")
def image(dockerd: None, rendered: Rendered) -> str:
    """The chart's serving image, built from this checkout."""
    gateway = rendered.get("Deployment", "kubeloop-gateway")
    image = str(gateway["spec"]["template"]["spec"]["containers"][0]["image"])
    proc = subprocess.run(["make", "images"], capture_output=True, text=True, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0
    )
    return image


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The model-store claim's contents, owned by the pods' user as fsGroup would make it:
    a model staged `production` and a newer candidate (`<name>:latest`, the canary's)."""
    from kubeloop.components.register import registry
    from tests.tiny_model import train_and_register

    root = tmp_path_factory.mktemp("claim")
    work = tmp_path_factory.mktemp("train")
    previous = os.environ.get("BENTOML_HOME")
    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    try:
        tag = train_and_register(work)
        registry.set_stage(tag, "production")
        candidate = train_and_register(tmp_path_factory.mktemp("train2"), seed=1)
    finally:
        if previous is None:
            del os.environ["BENTOML_HOME"]
        else:
            os.environ["BENTOML_HOME"] = previous
    subprocess.run(["chown", "-R", "10001:10001", str(root)], check=True)
    return root, tag, candidate


@pytest.fixture(scope="module")
def runner(
    image: str,
    rendered: Rendered,
    store: tuple[Path, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PodRunner]:
    """One Docker network standing in for the release's namespace; removed at the end."""
    claim = store[0]
    spec_dir = tmp_path_factory.mktemp("spec")
    spec_dir.chmod(0o755)
    for key, text in rendered.get("ConfigMap", "kubeloop-spec")["data"].items():
        (spec_dir / key).write_text(text)
        (spec_dir / key).chmod(0o644)  # a ConfigMap volume's defaultMode
    runner = PodRunner(
        network=f"kubeloop-pods-{uuid.uuid4().hex[:8]}",
        claims={"kubeloop-model-store": claim},
        config_maps={"kubeloop-spec": spec_dir},
        secrets={("kubeloop-admin", "admin-token"): TOKEN},
    )
    try:
        yield runner
    finally:
        runner.close()


@pytest.fixture(scope="module")
def prometheus(
    runner: PodRunner, image: str, tmp_path_factory: pytest.TempPathFactory
) -> PrometheusClient:
    """A real Prometheus in the network, scraping the pods by Service name every second."""
    folder = tmp_path_factory.mktemp("prometheus")
    folder.chmod(0o755)
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": t.split(":")[0], "static_configs": [{"targets": [t]}]} for t in SCRAPED
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    (folder / "prometheus.yml").chmod(0o644)
    pod = runner.run_binary(
        "prometheus",
        image,
        Path("/usr/bin/prometheus"),
        ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/tmp/data"],
        {folder: "/etc/prometheus"},
        port=9090,
    )
    return PrometheusClient(pod.url(""))


@pytest.fixture(scope="module")
def pods(runner: PodRunner, rendered: Rendered, prometheus: PrometheusClient) -> dict[str, Pod]:
    # Each Deployment is reachable under its Service's name, as in the namespace.
    names = ("kubeloop-stable", "kubeloop-canary", "kubeloop-gateway", "kubeloop-trigger")
    started = {name: runner.run(rendered.get("Deployment", name), alias=name) for name in names}
    for name in names:
        runner.wait_ready(started[name], rendered.get("Deployment", name))
    # The controller has no probe (no port): it starts once the gateway it calls is ready.
    controller = "kubeloop-controller"
    started[controller] = runner.run(rendered.get("Deployment", controller), alias=controller)
    return started


def test_every_pod_becomes_ready(pods: dict[str, Pod]) -> None:
    assert set(pods) == {
        "kubeloop-stable",
        "kubeloop-canary",
        "kubeloop-gateway",
        "kubeloop-trigger",
        "kubeloop-controller",
    }


def test_the_trigger_serves_its_webhook_and_metrics(pods: dict[str, Pod]) -> None:
    trigger = pods["kubeloop-trigger"]
    r = httpx.post(trigger.url("/alerts"), json={"not": "alertmanager"}, timeout=10)
    assert r.status_code == 400, r.text  # the webhook answers and names what is wrong
    assert "kubeloop_retrain" in httpx.get(trigger.url("/metrics"), timeout=10).text


def test_gateway_predicts_through_the_stable_service(
    pods: dict[str, Pod], store: tuple[Path, str, str]
) -> None:
    gateway = pods["kubeloop-gateway"]
    row = {"features": {"x": 1.5, "plan": "pro"}}
    r = httpx.post(gateway.url("/predict"), json=row, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["variant"] == "stable" and body["model"] == store[1]
    status = httpx.get(
        gateway.url("/admin/status"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ).json()
    assert status["stable"] == {"model": store[1], "ready": True, "error": None}
    scraped = httpx.get(gateway.url("/metrics"), timeout=10).text
    assert f"{metrics.GATEWAY_REQUESTS_TOTAL}{{" in scraped


def test_canary_through_the_admin_api_and_the_canary_service(
    pods: dict[str, Pod], store: tuple[Path, str, str]
) -> None:
    """The canary Service serves `<name>:latest` (the candidate); at 100 % every row goes
    there, and the routing state lands on the shared claim (spec workdir)."""
    claim, _, tag = store
    gateway = pods["kubeloop-gateway"]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(gateway.url("/admin/canary"), json={"model": tag}, headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(gateway.url("/admin/weights"), json={"canary": 100}, headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    body = httpx.post(
        gateway.url("/predict"), json={"features": {"x": -1.0, "plan": "basic"}}, timeout=30
    ).json()
    assert body["variant"] == "canary" and body["model"] == tag
    state = claim / "work" / "rollouts" / "gateway.json"
    assert state.is_file()
    assert httpx.post(gateway.url("/admin/rollback"), headers=auth, timeout=10).status_code == 200


def _kubeloop(pod: Pod, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl exec deploy/<pod> -- kubeloop ARGS --spec <the mounted spec>`."""
    return subprocess.run(
        [
            "docker",
            "exec",
            pod.container,
            "kubeloop",
            *args,
            "--spec",
            "/etc/kubeloop/kubeloop.yaml",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_a_rollout_started_in_the_controller_pod_drives_the_gateway(
    pods: dict[str, Pod], store: tuple[Path, str, str]
) -> None:
    """As helm/README.md says: `kubectl exec deploy/kubeloop-controller -- kubeloop rollout
    start ...`. The controller reaches the gateway's admin API by Service name with the token
    from the Secret; without Prometheus the rollout holds at its first step until aborted."""
    _, stable, candidate = store
    controller, gateway = pods["kubeloop-controller"], pods["kubeloop-gateway"]
    started = _kubeloop(controller, "rollout", "start", "--canary", candidate, "--no-wait")
    assert started.returncode == 0, started.stdout + started.stderr + controller.logs()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status = httpx.get(gateway.url("/admin/status"), headers=auth, timeout=10).json()
    assert status["stable"]["model"] == stable
    assert status["canary"]["model"] == candidate
    assert status["weights"]["canary"] == 5.0  # the spec's first canary step
    shown = _kubeloop(controller, "rollout", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert candidate in shown.stdout
    aborted = _kubeloop(controller, "rollout", "abort", "--reason", "pod test")
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    status = httpx.get(gateway.url("/admin/status"), headers=auth, timeout=10).json()
    assert status["weights"]["canary"] == 0.0


def test_the_helm_test_pod_passes_against_the_gateway(
    pods: dict[str, Pod], rendered: Rendered, runner: PodRunner
) -> None:
    hook = runner.run(rendered.get("Pod", "kubeloop-test"), alias="kubeloop-test")
    code = subprocess.run(
        ["docker", "wait", hook.container], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert code == "0", hook.logs()
    assert "/readyz 200" in hook.logs()


# Panels that must show data once requests went through the gateway; the others (server
# errors, feature lookups) have no samples in this run, but their queries must still execute.
PANELS_WITH_DATA = {
    "Requests per second by variant",
    "p99 latency by variant",
    "Traffic share (percent)",
    "Rollout phase",
    "Predicted rows per class and variant",
    "Model variant requests by outcome",
}


def test_dashboard_queries_run_against_prometheus_scraping_the_pods(
    pods: dict[str, Pod], prometheus: PrometheusClient
) -> None:
    """Grafana cannot run here: each panel's PromQL runs on the real Prometheus that scrapes
    the gateway and variant pods (the dashboard's $namespace variable matches everything)."""
    gateway = pods["kubeloop-gateway"]
    for _ in range(20):
        row = {"features": {"x": 0.3, "plan": "basic"}}
        assert httpx.post(gateway.url("/predict"), json=row, timeout=30).status_code == 200
    dashboards = render({**VALUES, "dashboards": {"enabled": True}}).objects
    panels = [
        p
        for o in dashboards
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
        for text in o["data"].values()
        for p in json.loads(text)["panels"]
    ]
    assert {p["title"] for p in panels} >= PANELS_WITH_DATA
    for panel in panels:
        for target in panel["targets"]:
            expr = promql(target["expr"])  # as Grafana sends it ($namespace = .*)
            if panel["title"] in PANELS_WITH_DATA:
                assert prometheus.wait_for_series(expr), panel["title"]
            else:
                prometheus.query(expr)  # raises when Prometheus refuses the query
