"""Run the chart's rendered pods in Docker, as the kubelet would: same image, command, env,
user, read-only root filesystem, dropped capabilities, and the same volumes (emptyDir ->
tmpfs, the model-store claim -> a host folder, ConfigMaps -> read-only files). One user-defined
Docker network stands in for the namespace: each pod is reachable under its Service's name.

No cluster can run here; this checks what a render alone cannot: that the pods' settings
work with the real image (paths writable where BentoML writes, probes on real endpoints).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.k8s.chart import Obj
from tests.k8s.policy import pod_spec

DOCKERD_LOG = Path("/tmp/kubeloop-dockerd.log")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {proc.stderr.strip()}")
    return proc


def docker_ready() -> bool:
    return shutil.which("docker") is not None and docker("info", check=False).returncode == 0


def start_dockerd(timeout_s: float = 60.0) -> subprocess.Popen[bytes] | None:
    """Start dockerd when none answers; returns the process this call started, if any."""
    if docker_ready():
        return None
    with DOCKERD_LOG.open("ab") as log:
        proc = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if docker_ready():
            return proc
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"dockerd did not answer within {timeout_s:.0f} s; see {DOCKERD_LOG}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantity_bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            return int(float(q.removesuffix(suffix)) * factor)
    return int(q)


@dataclass
class Pod:
    """One running container made from a rendered workload."""

    name: str
    container: str
    port: int | None  # host port of the container's first port, on 127.0.0.1

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> str:
        out = docker("logs", "--tail", "60", self.container, check=False)
        return out.stdout + out.stderr


@dataclass
class PodRunner:
    """Starts workloads of one render on one Docker network; `close()` removes everything."""

    network: str
    claims: dict[str, Path]  # PVC name -> host folder
    config_maps: dict[str, Path]  # ConfigMap name -> host folder with its files
    secrets: dict[tuple[str, str], str]  # (Secret name, key) -> value
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        docker("network", "create", self.network)

    def run(self, workload: Obj, alias: str) -> Pod:
        spec = pod_spec(workload)
        assert spec is not None, workload["kind"]
        c = spec["containers"][0]
        csc = c.get("securityContext", {})
        psc = spec.get("securityContext", {})
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup", uid))
        name = f"{self.network}-{alias}"
        args = ["run", "-d", "--name", name, "--network", self.network]
        args += ["--network-alias", alias, "--user", f"{uid}:{gid}"]
        if csc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        for cap in csc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", cap]
        if csc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for m in c.get("volumeMounts", []):
            args += self._mount(volumes[m["name"]], m, uid, gid)
        for e in c.get("env", []):
            args += ["-e", f"{e['name']}={self._env_value(e, c)}"]
        port = None
        if c.get("ports"):
            port = free_port()
            args += ["-p", f"127.0.0.1:{port}:{c['ports'][0]['containerPort']}"]
        args += ["--entrypoint", c["command"][0], c["image"], *c["command"][1:]]
        docker(*args)
        pod = Pod(name=workload["metadata"]["name"], container=name, port=port)
        self.pods.append(pod)
        return pod

    def _mount(
        self, volume: dict[str, Any], mount: dict[str, Any], uid: int, gid: int
    ) -> list[str]:
        path = mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            opts = f"uid={uid},gid={gid}" + (f",size={_quantity_bytes(size)}" if size else "")
            return ["--tmpfs", f"{path}:{opts}"]
        if "persistentVolumeClaim" in volume:
            host = self.claims[volume["persistentVolumeClaim"]["claimName"]]
            return ["-v", f"{host}:{path}"]
        if "configMap" in volume:
            host = self.config_maps[volume["configMap"]["name"]]
            return ["-v", f"{host}:{path}:ro"]
        raise ValueError(f"volume {volume['name']}: no Docker equivalent here")

    def _env_value(self, env: dict[str, Any], container: dict[str, Any]) -> str:
        if "value" in env:
            value = str(env["value"])
            # Kubernetes expands $(VAR) from the container's earlier env entries.
            for other in container.get("env", []):
                if "value" in other or "valueFrom" in other:
                    ref = f"$({other['name']})"
                    if ref in value and other is not env:
                        value = value.replace(ref, self._env_value(other, container))
            return value
        ref = env["valueFrom"]["secretKeyRef"]
        return self.secrets[(ref["name"], ref["key"])]

    def run_binary(
        self,
        alias: str,
        image: str,
        binary: Path,
        args: list[str],
        mounts: dict[Path, str],
        port: int,
    ) -> Pod:
        """A host binary (e.g. /usr/bin/prometheus) in a container of `image` on the network:
        for cluster services the chart expects but no image of can be pulled here."""
        name = f"{self.network}-{alias}"
        run = ["run", "-d", "--name", name, "--network", self.network, "--network-alias", alias]
        run += ["--user", "10001:10001", "--read-only", "--cap-drop", "ALL"]
        run += ["-v", f"{binary}:/usr/local/bin/{binary.name}:ro"]
        for host, path in mounts.items():
            run += ["-v", f"{host}:{path}:ro"]
        host_port = free_port()
        run += ["--tmpfs", "/tmp:uid=10001,gid=10001", "-p", f"127.0.0.1:{host_port}:{port}"]
        docker(*run, "--entrypoint", f"/usr/local/bin/{binary.name}", image, *args)
        pod = Pod(name=alias, container=name, port=host_port)
        self.pods.append(pod)
        return pod

    def wait_ready(self, pod: Pod, workload: Obj, timeout_s: float = 120.0) -> None:
        """Poll the container's readinessProbe (httpGet) until it answers 200."""
        spec = pod_spec(workload)
        assert spec is not None
        probe = spec["containers"][0]["readinessProbe"]["httpGet"]
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            state = docker("inspect", "-f", "{{.State.Running}}", pod.container).stdout.strip()
            if state != "true":
                raise AssertionError(f"{pod.name} exited:\n{pod.logs()}")
            try:
                r = httpx.get(pod.url(probe["path"]), timeout=5)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as err:
                last = repr(err)
            time.sleep(1)
        raise AssertionError(
            f"{pod.name} not ready after {timeout_s:.0f} s ({last}):\n{pod.logs()}"
        )

    def close(self) -> None:
        for pod in self.pods:
            docker("rm", "-f", pod.container, check=False)
        docker("network", "rm", self.network, check=False)
