"""What the gateway tests share: two registered versions of the tiny model, a spec whose Feast
online store holds the model's features by entity id, and real server processes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from kubeloop.components.core.spec import Spec, load_spec

BIN = Path(sys.executable).parent
ADMIN_TOKEN = "test-admin-token"
ENTITIES = 40  # entity ids 0 .. 39 are in the online store
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register_two_versions(tmp: Path, hidden_units: list[int] | None = None) -> tuple[str, str]:
    """Two versions of the binary tiny model ``churn``: stable (production) and a candidate.
    BENTOML_HOME must already point at a scratch store."""
    from kubeloop.components.register import registry
    from tests.tiny_model import train_and_register

    for d in ("a", "b"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    stable = train_and_register(tmp / "a", hidden_units=hidden_units)
    registry.set_stage(stable, "archived")  # out of the gate's way: the second need not beat it
    canary = train_and_register(tmp / "b", seed=1, hidden_units=hidden_units)
    registry.set_stage(stable, "production")
    return stable, canary


def write_spec(folder: Path, **serve: Any) -> Path:
    """kubeloop.yaml for the tiny model (entity ``id``, timestamp ``ts``), workdir inside."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": "churn",
        "workdir": str(folder / "wd"),
        "data": {"source": "unused.csv", "label": "y", "entity": "id", "timestamp": "ts"},
        "serve": serve,
    }
    path = folder / "kubeloop.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def feature_rows(n: int = ENTITIES, seed: int = 5) -> pd.DataFrame:
    """Two snapshots per entity (the later one wins online); features of the tiny model."""
    rng = np.random.default_rng(seed)
    frames = []
    for snap in range(2):
        frames.append(
            pd.DataFrame(
                {
                    "id": np.arange(n, dtype="int64"),
                    "ts": T0 + pd.Timedelta(days=30 * snap),
                    "x": rng.normal(size=n).round(3),
                    "plan": rng.choice(["basic", "pro"], size=n).astype(object),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def build_feature_store(spec: Spec, df: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """Register the feature definitions over `df` and materialize them into the SQLite online
    store, as the features stage does; returns the latest row per entity id."""
    from kubeloop.components.core.schema import feature_kinds
    from kubeloop.components.features.definitions import build
    from kubeloop.components.features.store import open_store, source_path

    src = source_path(spec)
    src.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(src, index=False)
    kinds = feature_kinds(df.drop(columns=["id", "ts"]).assign(y="no"), spec)
    defs = build(spec, str(src.resolve()), kinds, dtypes=df.dtypes.to_dict())
    store = open_store(spec)
    store.apply(defs.objects)
    ts = df["ts"]
    store.materialize(
        ts.min().to_pydatetime() - timedelta(seconds=1),
        ts.max().to_pydatetime() + timedelta(seconds=1),
    )
    latest = df.sort_values("ts").groupby("id").tail(1).set_index("id")
    return {int(i): {"x": r.x, "plan": r.plan} for i, r in latest.iterrows()}


def load(path: Path) -> Spec:
    return load_spec(path)


def serve_env(home: str) -> dict[str, str]:
    env = {**os.environ, "BENTOML_HOME": home, "BENTOML_DO_NOT_TRACK": "1"}
    env["KUBELOOP_ADMIN_TOKEN"] = ADMIN_TOKEN
    env.pop("KUBELOOP_MODEL_TAG", None)
    env.pop("KUBELOOP_SPEC", None)
    return env


@contextlib.contextmanager
def served(
    cmd: list[str], port: int, env: dict[str, str], log: Path, timeout: float = 120
) -> Iterator[str]:
    """Run a server until the block ends; yields its base URL once /readyz answers 200.
    The process is stopped with SIGTERM (the CLI passes it on to the servers it started)."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{cmd[:3]} exited:\n{log.read_text()[-4000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready in {timeout} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def gateway_cmd(spec: Path, port: int, *extra: str) -> list[str]:
    return [str(BIN / "kubeloop"), "serve", "--spec", str(spec), "--port", str(port), *extra]


def variant_cmd(port: int, tag: str, *args: str) -> list[str]:
    cmd = [str(BIN / "bentoml"), "serve", "kubeloop.serving.variant:ModelVariant"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--arg", f"model={tag}"]
    for a in args:
        cmd += ["--arg", a]
    return cmd


def admin(base: str, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.request(method, f"{base}/admin/{path}", json=body, headers=headers, timeout=120)


def metric_lines(base: str, name: str) -> list[str]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return [ln for ln in text.splitlines() if ln.startswith(name)]
