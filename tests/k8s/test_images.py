"""The images for real: `make images` builds them offline (debootstrap base, local
wheelhouse), the final images run as uid 10001 with no build tools, the serving image
answers /predict in a container on 127.0.0.1, and `kubeloop pipeline run --docker` runs
the whole training pipeline in the component image. A Docker daemon is started here when
none answers (and stopped again). Minutes on a cold machine; seconds once cached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from kubeloop import __version__
from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.image import PLATFORM_IMAGE, SERVING_IMAGE
from kubeloop.components.core.spec import load_spec, parse_spec
from kubeloop.pipelines.cli.main import app
from kubeloop.pipelines.local import container_mounts, docker_runner
from tests.k8s.podrun import start_dockerd
from tests.serving_env import free_port, served

pytestmark = pytest.mark.xdist_group("images")

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
STORE_IN_IMAGE = "/var/lib/kubeloop/bentoml"  # the serving image's BENTOML_HOME
REQUIRED = ("docker", "dockerd", "debootstrap")


@pytest.fixture(scope="module")
def docker_daemon() -> Iterator[None]:
    missing = [b for b in REQUIRED if shutil.which(b) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (apt-get install docker.io debootstrap)")
    started = start_dockerd()  # None when a daemon already answers: that one is left alone
    try:
        yield
    finally:
        if started is not None:
            started.terminate()
            try:
                started.wait(60)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(10)


@pytest.fixture(scope="module")
def images(docker_daemon: None) -> tuple[str, str]:
    """`make images`, as a user runs it; the image names it prints last (inside `make test`
    a sub-make would otherwise print its "Leaving directory" line after them)."""
    build = subprocess.run(
        ["make", "--no-print-directory", "images"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    assert build.stdout.split()[-2:] == [PLATFORM_IMAGE, SERVING_IMAGE]
    return PLATFORM_IMAGE, SERVING_IMAGE


def _inspect(image: str) -> dict:
    out = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]


def _sh(image: str, script: str, *user: str) -> subprocess.CompletedProcess[str]:
    cmd = ["docker", "run", "--rm", "--network", "none", *user, "--entrypoint", "sh", image]
    return subprocess.run(
        [*cmd, "-c", script],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("which", [0, 1], ids=["component", "serving"])
def test_final_images_run_as_uid_10001_without_build_tools(
    images: tuple[str, str], which: int
) -> None:
    image = images[which]
    assert image.endswith(f":{__version__}")
    assert _inspect(image)["Config"]["User"] == "10001:10001"
    probe = _sh(
        image,
        "id -u; kubeloop --version; command -v bentoml; command -v feast; "
        "for tool in gcc cc c++ make git pip pip3; do command -v $tool && echo FOUND $tool; done; "
        "python3 -c 'import pip' 2>/dev/null && echo FOUND pip-module; "
        "python3 -c 'import torch; print(torch.__version__)'",
    )
    assert probe.returncode == 0, probe.stderr
    lines = probe.stdout.split("\n")
    assert lines[0] == "10001"
    assert lines[1] == f"kubeloop {__version__}"
    assert lines[2:4] == ["/opt/kubeloop/bin/bentoml", "/opt/kubeloop/bin/feast"]
    assert not [line for line in lines if line.startswith("FOUND")], probe.stdout
    assert "2.13.0" in lines[-2]
    # Nothing of the build stages is left behind (looked at as root, who sees everything).
    leftovers = "/root/.cache /home/kubeloop/.cache /wheels /project /staging /opt/installer"
    left = _sh(image, f"for p in {leftovers}; do test -e $p && echo $p; done; true", "-u", "0")
    assert left.returncode == 0, left.stderr
    assert left.stdout == ""


def test_serving_image_is_the_component_image_plus_its_own_layers(
    images: tuple[str, str],
) -> None:
    component, serving = (_inspect(i)["RootFS"]["Layers"] for i in images)
    # The heavy dependency layer is built once and shared (same build stages, same cache).
    assert serving[: len(component)] == component
    assert len(serving) > len(component)


def test_serving_image_answers_predict_on_localhost(
    images: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.tiny_model import train_and_register

    store = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(store))
    tag = train_and_register(tmp_path)
    subprocess.run(["chmod", "-R", "a+rX", str(store)], check=True)  # readable for uid 10001
    port, name = free_port(), f"kubeloop-test-{uuid.uuid4().hex[:8]}"
    cmd = ["docker", "run", "--rm", "--name", name, "--network", "host"]
    cmd += ["-e", f"KUBELOOP_MODEL_TAG={tag}", "-v", f"{store}:{STORE_IN_IMAGE}:ro", images[1]]
    cmd += ["bentoml", "serve", "kubeloop.serving.variant:ModelVariant"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    try:
        with served(cmd, port, dict(os.environ), tmp_path / "serve.log") as base:
            r = httpx.post(
                f"{base}/predict", json={"rows": [{"x": 2.0, "plan": "pro"}]}, timeout=30
            )
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    assert r.status_code == 200, r.text
    (row,) = r.json()
    assert row["model"] == tag
    assert row["prediction"] in ("yes", "no")
    assert set(row["probabilities"]) == {"no", "yes"}


def test_pipeline_run_docker_completes_in_the_component_image(
    images: tuple[str, str], tmp_path: Path
) -> None:
    from kubeloop.components.datasets.churn import write_demo

    demo = tmp_path / "demo"
    write_demo(demo, rows=1000, seed=0)
    spec_path = demo / "kubeloop.yaml"
    raw = yaml.safe_load(spec_path.read_text())
    raw["tune"] = {"trials": 2, "parallelism": 2, "epochs": 2}
    raw["train"] = {**raw.get("train", {}), "epochs": 3}
    # A bar any model clears: this test is about where the steps run, not model quality.
    raw["evaluate"] = {**raw["evaluate"], "minimums": {"roc_auc": 0.0}}
    spec_path.write_text(yaml.safe_dump(raw))
    store = tmp_path / "bentoml"
    env = {**os.environ, "BENTOML_HOME": str(store)}
    run = subprocess.run(
        [str(BIN / "kubeloop"), "pipeline", "run", "--docker", "--spec", str(spec_path), "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout)
    assert summary["status"] == "succeeded", summary
    log = Path(summary["log"]).read_text()
    # Every task ran in a container of the component image (kfp.local says so per task).
    tasks = log.count("Executing task")
    assert tasks >= 10
    assert log.count(f"Found image '{images[0]}'") == tasks
    # The model went into the caller's store through the bind mount, owned by the caller.
    model_dir = store / "models" / summary["model_tag"].replace(":", "/")
    assert model_dir.is_dir()
    assert model_dir.stat().st_uid == os.getuid()


def test_docker_runner_names_a_missing_image(docker_daemon: None, tmp_path: Path) -> None:
    spec = parse_spec({"name": "p", "data": {"source": str(tmp_path / "d.csv"), "label": "y"}})
    with pytest.raises(KubeloopError, match=r"kubeloop:no-such-tag is not in the local Docker"):
        docker_runner(spec, image="ghcr.io/kubeloop/kubeloop:no-such-tag")


def test_container_mounts_are_the_outermost_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "project" / "kubeloop.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "p",
                "workdir": "state",
                "data": {"source": "data/d.csv", "label": "y"},
                "validation": {"reference": "state/ref/snap.parquet"},
                "tune": {"storage": "../journals/study.log"},
                "features": {"store_yaml": "https://example.invalid/store.yaml"},
            }
        )
    )
    spec = load_spec(tmp_path / "project" / "kubeloop.yaml")
    mounts = container_mounts(spec, bentoml_home=tmp_path / "project" / "state" / "bentoml")
    # state/ref and the store lie inside the workdir; a URL is no folder.
    assert mounts == [
        tmp_path / "journals",
        tmp_path / "project" / "data",
        tmp_path / "project" / "state",
    ]
    assert (tmp_path / "journals").is_dir()  # created: Docker needs a bind source to exist


def test_host_and_docker_together_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["pipeline", "run", "--docker", "--host", "http://kfp.invalid", "--spec", "x.yaml"]
    )
    assert result.exit_code == 1
    assert "--host and --docker: choose one" in result.output
