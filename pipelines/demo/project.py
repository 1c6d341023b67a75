"""The demo project: churn data with a drifted later period and a spec tuned for a quick loop.

The loop spec (``loop.yaml``) is the demo dataset's ``kubeloop.yaml`` plus the sections that
make the loop short enough to watch: small drift windows, a three-step canary with short
intervals and the ports this run listens on. It is generated on every run; the data spec
stays as ``kubeloop data demo`` wrote it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic

LOOP_SPEC = "loop.yaml"
TIMELINE_FILE = "timeline.json"
# What a demo run leaves under its folder and removes before the next run.
STATE_DIRS = (".kubeloop", "bentoml", "monitoring", "logs")
# Everything a demo folder may hold: what `kubeloop data demo` and the demo write.
DEMO_FILES = frozenset(
    {*STATE_DIRS, "churn.csv", "churn_drift.csv", "kubeloop.yaml", "traffic.csv", LOOP_SPEC,
     TIMELINE_FILE}
)  # fmt: skip
# The steady traffic is the training period's distribution drawn from another random stream:
# rows no model has seen. As many rows as the training data: contract, plan and payment method
# are drawn per customer (about 4 rows each), so a smaller population has a category mix of
# its own that the drift checks rightly flag (3 of 16 windows for 500 customers).
STEADY_SEED_OFFSET = 1000


@dataclass(frozen=True)
class Ports:
    gateway: int
    prometheus: int
    alertmanager: int
    trigger: int


@dataclass(frozen=True)
class Project:
    folder: Path
    spec: Path  # the loop spec
    data: Path  # churn.csv: what the first model trains on
    drift: Path  # churn_drift.csv: the later, shifted period the traffic switches to
    steady: Path  # traffic.csv: unseen rows of the training period (another random stream)
    ports: Ports

    @property
    def bentoml_home(self) -> Path:
        """The demo's own model store: a rerun starts from no champion, and the user's
        registry is left alone."""
        return self.folder / "bentoml"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def monitoring(self) -> Path:
        return self.folder / "monitoring"


def loop_overrides(ports: Ports) -> dict[str, Any]:
    """The spec sections that make the loop quick on one machine."""
    return {
        # Labelled serving traffic is the newest data, so a time split puts it in test and
        # validation first: with 10 % each, the retraining trained on 21 of 2,984 drifted
        # labelled rows (measured). 5 % each leaves it most of them.
        "data": {"split": {"strategy": "time", "fractions": [0.9, 0.05, 0.05]}},
        "tune": {"trials": 4, "parallelism": 2, "epochs": 6},
        "serve": {
            "host": "127.0.0.1",
            "port": ports.gateway,
            "canary_steps": [25, 50, 100],
            "interval_s": 20,
            "min_requests": 20,
            "min_labels": 30,  # labelled rows per variant per window for live_quality_delta
            # One noisy 20 s window (a pipeline run shares the two cores) is not a verdict;
            # a canary that fails twice in a row is rolled back.
            "failure_limit": 1,
            "deadline_s": 300,
            "analysis": [
                {"name": "success_rate", "min": 0.99},
                # Two shared cores: the gateway, the traffic and a pipeline run compete.
                {"name": "latency_p99_ratio", "max": 3.0},
                # Ground truth from the replayed labels: the canary may not be worse.
                {"name": "live_quality_delta", "min": -0.02},
            ],
        },
        "monitor": {
            "prometheus_url": f"http://127.0.0.1:{ports.prometheus}",
            "drift_window": 500,
        },
        "retrain": {"enabled": True, "cooldown_s": 900, "daily_budget": 2},
    }


def _check_demo_folder(folder: Path) -> None:
    """The demo clears and rewrites its folder: refuse one holding anything else (a project
    of the user's, say), so that nothing of theirs is lost."""
    if folder.exists() and not folder.is_dir():
        raise KubeloopError(f"--out {folder}: not a folder")
    if not folder.exists():
        return
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in DEMO_FILES)
    if foreign:
        raise KubeloopError(
            f"--out {folder}: holds {', '.join(foreign[:5])}"
            f"{' …' if len(foreign) > 5 else ''}, which the demo did not write; it clears "
            "and rewrites its folder, so pick a new or empty one (default .kubeloop-demo)"
        )


def prepare(folder: Path, ports: Ports, *, rows: int, seed: int = 0) -> Project:
    """Write the demo data (same seed, same data) and the loop spec; clear the state a
    previous demo run left in `folder`."""
    from kubeloop.components.core.spec import load_spec
    from kubeloop.components.datasets.churn import generate, write_demo

    folder = folder.resolve()
    _check_demo_folder(folder)
    for name in STATE_DIRS:
        shutil.rmtree(folder / name, ignore_errors=True)
    paths = write_demo(folder, rows=rows, seed=seed, drift=True)
    steady = folder / "traffic.csv"
    generate(rows, seed=seed + STEADY_SEED_OFFSET).to_csv(steady, index=False)
    doc = yaml.safe_load(paths["spec"].read_text()) or {}
    for section, values in loop_overrides(ports).items():
        doc[section] = {**(doc.get(section) or {}), **values}
    spec = folder / LOOP_SPEC
    write_text_atomic(
        spec,
        f"# generated by `kubeloop demo` from {paths['spec'].name} — do not edit\n"
        + yaml.safe_dump(doc, sort_keys=False),
    )
    load_spec(spec)  # a bad data spec stops here, before any process starts
    return Project(folder, spec, paths["data"], paths["drift"], steady, ports)
