"""Run the training pipeline on this machine through `kfp.local`, with progress display.

kfp.local prints its own log (task starts/ends, the tasks' streamed output) to stdout;
the runner tees it into `{workdir}/runs/<run_id>/pipeline.log` and turns the task lines
into a live progress display. Each task appends its outcome to the run's steps file;
when the run ends they are folded into the run record (`kubeloop runs show`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any

from pydantic import BaseModel

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.image import PLATFORM_IMAGE
from kubeloop.components.core.spec import Spec
from kubeloop.components.tracking.steps import read_events

TRIAL_THREADS_ENV = "KUBELOOP_TRIAL_THREADS"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_KFP_LOG_LINE = re.compile(r"^(\d\d:\d\d:\d\d\.\d+ - |-{10})")


class RunSummary(BaseModel):
    """What `kubeloop pipeline run` reports at the end."""

    run_id: str
    status: str  # succeeded | gate_failed | blocked | failed
    seconds: float
    failed_step: str | None = None
    error: str | None = None
    gate_passed: bool | None = None
    gate_reasons: list[str] = []
    primary_metric: str | None = None
    metrics: dict[str, float] = {}
    model_tag: str | None = None
    report: str | None = None
    validation_report: str | None = None
    log: str
    task_seconds: float = 0.0  # wall time covered by task bodies (intervals merged)


def new_run_id(spec: Spec) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{spec.name}-{stamp}-{token_hex(2)}"


class _LineTee(io.TextIOBase):
    """A stdout stand-in: everything goes to the log file, each line to a callback."""

    def __init__(self, log: io.TextIOBase, on_line: Callable[[str], None]) -> None:
        self._log = log
        self._on_line = on_line
        self._partial = ""
        self._lock = threading.Lock()  # parallel trials log from several threads

    def write(self, s: str) -> int:
        with self._lock:
            self._log.write(s)
            self._partial += s
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._on_line(_ANSI.sub("", line).strip())
        return len(s)

    def flush(self) -> None:
        self._log.flush()


def _merged_seconds(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def summarize(run_id: str, events: list[dict[str, Any]], seconds: float, log: str) -> RunSummary:
    """Fold the tasks' step events into the run's outcome."""
    s = RunSummary(run_id=run_id, status="succeeded", seconds=seconds, log=log)
    for ev in events:
        fields = ev.get("fields", {})
        arts = fields.get("artifacts", {})
        if ev["step"] == "validate":
            s.validation_report = arts.get("validation_report")
        if ev["step"] == "evaluate":
            s.report = arts.get("report", s.report)
            gate = fields.get("gate") or {}
            s.gate_passed = gate.get("passed")
            s.gate_reasons = gate.get("reasons", [])
            s.metrics = fields.get("metrics", {})
            s.primary_metric = fields.get("primary_metric")
        if fields.get("model_tag"):
            s.model_tag = fields["model_tag"]
        if ev.get("status") in ("failed", "blocked") and s.failed_step is None:
            s.status = ev["status"]
            s.failed_step = ev["step"]
            s.error = ev.get("error")
            s.validation_report = ev.get("report") or s.validation_report
    if s.status == "succeeded" and s.gate_passed is False:
        s.status = "gate_failed"
    s.task_seconds = _merged_seconds([(ev["start"], ev["end"]) for ev in events])
    return s


class _Progress:
    """Live step list, driven by the tasks' own step events (kfp.local's log lines are
    unreliable with parallel tasks: its logger context is not thread-safe)."""

    def __init__(self, console: Any, workdir: Path, run_id: str) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Column

        self._progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}", table_column=Column(min_width=14, no_wrap=True)),
            TimeElapsedColumn(),
            TextColumn(
                "[dim]{task.fields[detail]}",
                table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
            ),
            console=console,
        )
        self._console = console
        self._live = console.is_terminal  # else (CI, a pipe): one line per finished step
        self._workdir, self._run_id = workdir, run_id
        self._rows: dict[str, Any] = {}
        self._seen = 0
        self._detail = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _Progress:
        if self._live:
            self._progress.__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._refresh()
        if self._live:
            self._progress.__exit__(None, None, None)

    def on_line(self, line: str) -> None:
        if line and not _KFP_LOG_LINE.match(line):
            self._detail = line[-80:]

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            self._refresh()

    def _refresh(self) -> None:
        events = read_events(self._workdir, self._run_id, starts=True)
        for ev in events[self._seen :]:
            step, status = ev["step"], ev["status"]
            if status == "started":
                self._rows[step] = self._progress.add_task(step, total=1, detail="")
                continue
            row = self._rows.pop(step, None)
            seconds = ev["end"] - ev["start"]
            if not self._live:
                mark = "[green]✓[/]" if status == "succeeded" else f"[red]✗ {status}[/]"
                self._console.print(f"{mark} {step:<14} {seconds:6.1f} s", highlight=False)
            if row is None:
                continue
            if status == "succeeded":
                self._progress.update(row, completed=1, detail="")
            else:
                self._progress.update(row, description=f"[red]✗ {step} {status}[/]", detail="")
            self._progress.stop_task(row)
        self._seen = len(events)
        for row in self._rows.values():
            self._progress.update(row, detail=self._detail)


def run_local(
    spec: Spec,
    *,
    run_id: str | None = None,
    console: Any = None,
    runner: Any = None,
) -> RunSummary:
    """Run the pipeline with kfp.local (SubprocessRunner in this venv by default; pass
    `docker_runner(spec)` to run every component in the component image)."""
    from kfp import local
    from rich.console import Console

    from kubeloop.components.tracking.store import RunStore
    from kubeloop.pipelines.training import build_training_pipeline

    # Bound now: stderr is redirected into the log below (kfp logs errors there too).
    console = console or Console(file=sys.stderr)
    run_id = run_id or new_run_id(spec)
    workdir = Path(spec.workdir)
    store = RunStore(workdir / "runs")
    store.start(run_id, spec)
    run_dir = workdir / "runs" / run_id
    log_path = run_dir / "pipeline.log"

    local.init(
        runner=runner or local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "pipeline_root"),
        raise_on_error=True,
    )
    pipeline = build_training_pipeline(spec)
    # kfp.local warns that our image is not a Python base image: by design, the local
    # runner executes the same components in this venv instead.
    warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
    started = time.perf_counter()
    error: str | None = None
    with (
        _threads_per_trial(spec),
        log_path.open("w") as log,
        _Progress(console, workdir, run_id) as progress,
        contextlib.redirect_stdout(_LineTee(log, progress.on_line)),
        contextlib.redirect_stderr(log),
    ):
        try:
            pipeline(spec_json=spec.model_dump_json(), run_id=run_id)
        except RuntimeError as err:  # kfp.local: "Pipeline ... Inner task failed: x"
            error = str(err)
    seconds = time.perf_counter() - started
    events = read_events(workdir, run_id)
    summary = summarize(run_id, events, seconds, str(log_path))
    if error and summary.status == "succeeded":
        summary.status, summary.error = "failed", _ANSI.sub("", error)
    # KFP artifact files have no suffix; keep browsable copies beside the run record.
    summary.report = _copy_as_html(summary.report, run_dir / "report.html")
    summary.validation_report = _copy_as_html(
        summary.validation_report, run_dir / "validation_report.html"
    )
    store.record_summary(run_id, summary.model_dump(mode="json"), events)
    return summary


def _trial_threads(spec: Spec) -> int:
    cores = len(os.sched_getaffinity(0))
    return max(1, cores // max(1, spec.tune.parallelism))


@contextlib.contextmanager
def _threads_per_trial(spec: Spec) -> Iterator[None]:
    """Share the cores between parallel tuning trials instead of oversubscribing them.

    Each task is its own process and torch starts one thread per core; with
    `tune.parallelism` trials at once on a small machine the threads fight over the cores
    (the pipeline benchmark ran 2.2x slower on 2 cores). Trial tasks read this variable;
    the other tasks, which run alone, keep every core.
    """
    if TRIAL_THREADS_ENV in os.environ:
        yield
        return
    os.environ[TRIAL_THREADS_ENV] = str(_trial_threads(spec))
    try:
        yield
    finally:
        del os.environ[TRIAL_THREADS_ENV]


def _copy_as_html(src: str | None, dst: Path) -> str | None:
    if not src or not Path(src).is_file():
        return src
    shutil.copyfile(src, dst)
    return str(dst)


def docker_runner(spec: Spec, image: str = PLATFORM_IMAGE, client: Any = None) -> Any:
    """A kfp.local DockerRunner that runs the components in the locally built `image`.

    The image must already be in the local Docker (`make images`): kfp.local would
    otherwise try to pull it. Every host path the spec names (workdir, data, validation
    reference, Feast store config, Optuna journal) and the model store are bind-mounted
    at the same absolute path, so the spec JSON means the same inside the container.
    Containers run as the calling user (files they write stay the caller's) on the host
    network (a Prometheus or feature store on localhost stays reachable).
    `client`: a docker SDK client (default: `docker.from_env()`).
    """
    try:
        import docker
        from docker.types import Mount
    except ImportError:
        raise KubeloopError(
            "--docker needs the `docker` Python package: pip install 'kubeloop[docker]'"
        ) from None
    from kfp import local

    from kubeloop.components.register.registry import store_home

    try:
        client = client or docker.from_env()
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise KubeloopError(
            f"image {image} is not in the local Docker: build it with `make images`"
        ) from None
    except docker.errors.DockerException as err:
        raise KubeloopError(
            f"no Docker daemon answers ({err}); start one, e.g. "
            "`dockerd >/tmp/dockerd.log 2>&1 &` as root"
        ) from None
    home = store_home()
    mounts = [
        Mount(target=str(p), source=str(p), type="bind")
        for p in container_mounts(spec, bentoml_home=home)
    ]
    return local.DockerRunner(
        mounts=mounts,
        user=f"{os.getuid()}:{os.getgid()}",
        network_mode="host",
        environment={
            "BENTOML_HOME": str(home),
            TRIAL_THREADS_ENV: str(_trial_threads(spec)),
            "HOME": "/tmp",  # the calling user has no home in the image
        },
    )


def container_mounts(spec: Spec, *, bentoml_home: Path) -> list[Path]:
    """The outermost host folders a containerized run needs: the workdir,
    the model store and the Optuna journal's folder (created if missing: Docker needs a
    bind source to exist) and the folders of the input files that exist (a missing input
    fails in its task with the task's own message)."""
    workdir = Path(spec.workdir).resolve()
    folders = {workdir, bentoml_home.resolve()}
    storage = spec.tune.storage
    if storage and "://" not in storage:
        folders.add(Path(storage).resolve().parent)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    for f in (spec.data.source, spec.validation.reference, spec.features.store_yaml):
        if f and "://" not in f and Path(f).resolve().parent.is_dir():
            folders.add(Path(f).resolve().parent)
    # Nested bind mounts of one tree are redundant (and a duplicate target is an error).
    outermost: list[Path] = []
    for p in sorted(folders, key=lambda p: len(p.parts)):
        if not any(p.is_relative_to(o) for o in outermost):
            outermost.append(p)
    return sorted(outermost)
