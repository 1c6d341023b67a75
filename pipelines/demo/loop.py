"""The demo, start to end: train the first model, serve it with monitoring, replay held-out
traffic, switch to the drifted period, and watch the loop close on its own — drift, alert,
retraining, gate, canary, promotion — then write the timeline.

Nothing in here acts on the loop once traffic flows: the demo only sends requests and
labels and reads state. Every step after the drift onset is taken by kubeloop's own parts
(gateway drift checks, Prometheus rules, Alertmanager, the retrain trigger, the rollout
controller), started as the separate processes they are in production.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic
from kubeloop.pipelines.demo.project import TIMELINE_FILE, Ports, Project, prepare
from kubeloop.pipelines.demo.stack import KUBELOOP, Stack
from kubeloop.pipelines.demo.traffic import Replay, load_rows
from kubeloop.pipelines.demo.view import event_line, live_view
from kubeloop.pipelines.demo.watch import Event, Snapshot, Watcher

Outcome = Literal["promoted", "rolled_back", "gate_failed", "failed", "timed_out"]


@dataclass
class DemoResult:
    outcome: Outcome
    reason: str
    onset_at: float | None
    finished_at: float
    seconds_to_promotion: float | None  # drift onset -> promoted
    first_model: str
    production: str | None
    traffic: dict[str, Any] = field(default_factory=dict)  # requests, answers, labels
    events: list[Event] = field(default_factory=list)
    timeline: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "events": [asdict(e) for e in self.events]}


@dataclass
class Options:
    rows: int = 10000
    seed: int = 0
    steady_s: float = 45.0  # held-out traffic before the drift period starts
    rate: float = 40.0  # requests per second
    timeout_s: float = 900.0  # drift onset -> give up
    label_delay_s: float = 5.0
    keep_running: bool = False  # leave the services up after the loop ends, until Ctrl-C


def train_first_model(project: Project, console: Console) -> str:
    """Run the training pipeline once and put its model in production."""
    from kubeloop.components.core.spec import load_spec
    from kubeloop.components.register.registry import set_stage
    from kubeloop.components.tracking.store import RunStore
    from kubeloop.pipelines.local import new_run_id
    from kubeloop.serving.trigger.runners import result_from_record

    spec = load_spec(project.spec)
    run_id = new_run_id(spec)
    log = project.logs / "first-training.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*KUBELOOP, "pipeline", "run", "--spec", str(project.spec), "--run-id", run_id]
    status = console.status(f"training the first model (run {run_id}, log {log}) …")
    with status, log.open("wb") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    result = result_from_record(RunStore.for_spec(spec), run_id)
    if result is None or not result.gate_passed or not result.model_tag:
        tail = log.read_text(errors="replace")[-1500:]
        raise KubeloopError(f"the first training run did not register a model; {log}:\n{tail}")
    set_stage(result.model_tag, "production")
    return result.model_tag


def _finished(snap: Snapshot, first_model: str) -> tuple[Outcome, str] | None:
    """The loop's end, if it has come: a rollout of a retrained model ended, or the
    retraining ended without one."""
    rollout, request = snap.rollout, snap.request
    if rollout and rollout["canary"] != first_model and rollout["phase"] == "promoted":
        return "promoted", f"{rollout['canary']} promoted to production"
    if rollout and rollout["phase"] == "rolled_back":
        last = rollout["analyses"][-1]["reason"] if rollout.get("analyses") else ""
        return "rolled_back", f"canary {rollout['canary']} rolled back: {last}"
    if request and request["status"] == "done" and request["outcome"] != "canary_started":
        outcome: Outcome = "gate_failed" if request["outcome"] == "gate_failed" else "failed"
        return outcome, f"retraining ended {request['outcome']} (see {request.get('decision')})"
    return None


def run_demo(
    folder: Path,
    ports: Ports,
    options: Options,
    console: Console,
    report: Callable[[DemoResult], None],
) -> DemoResult:
    """Run the demo; `report` shows the result while the services still run (with
    ``options.keep_running`` they stay up after it until Ctrl-C)."""
    t0 = time.time()
    project = prepare(folder, ports, rows=options.rows, seed=options.seed)
    os.environ["BENTOML_HOME"] = str(project.bentoml_home)  # the registry reads it per call
    os.environ.setdefault("KUBELOOP_ADMIN_TOKEN", secrets.token_hex(16))
    env = {
        "BENTOML_HOME": str(project.bentoml_home),
        "KUBELOOP_ADMIN_TOKEN": os.environ["KUBELOOP_ADMIN_TOKEN"],
        "PYTHONUNBUFFERED": "1",
    }
    from kubeloop.components.core.spec import load_spec

    spec = load_spec(project.spec)
    console.print(
        f"demo folder {project.folder}; spec {project.spec}; logs {project.logs}/",
        soft_wrap=True,
    )
    first = train_first_model(project, console)
    watcher = Watcher(spec, f"http://127.0.0.1:{ports.prometheus}")
    watcher.events.append(Event(t0, "demo started: churn data written, loop spec generated"))
    watcher.mark("first-model", f"first model {first} trained and put in production")
    stack = Stack(project, env)
    with ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        cleanup.callback(watcher.close)
        with console.status("starting Prometheus, Alertmanager, gateway, trigger, controller …"):
            stack.start(stack.monitoring())
            stack.start(stack.loop())
        watcher.mark("stack", "Prometheus, Alertmanager, gateway, trigger and controller up")
        replay = Replay(
            f"http://127.0.0.1:{ports.gateway}",
            load_rows(spec, project.steady, shuffle=True, seed=options.seed),
            rate=options.rate,
            label_delay_s=options.label_delay_s,
        )
        drifted_rows = load_rows(spec, project.drift)
        replay.start()
        cleanup.callback(replay.stop)
        watcher.mark("traffic", f"replaying held-out traffic at {options.rate:g} requests/s")
        kind, reason = _watch(console, watcher, stack, replay, drifted_rows, first, options)
        replay.stop()
        result = _result(project, watcher, first, kind, reason, replay)
        report(result)
        if options.keep_running:
            _keep_running(console, stack, ports)
    return result


def _result(
    project: Project, watcher: Watcher, first: str, kind: Outcome, reason: str, replay: Replay
) -> DemoResult:
    """The result, also written to ``timeline.json``."""
    finished = time.time()
    watcher.events.append(Event(finished, f"demo ended: {reason}"))
    onset = next((e.at for e in watcher.events if e.what.startswith("drift onset")), None)
    promoted_at = next((e.at for e in watcher.events if e.what == "canary promoted"), None)
    result = DemoResult(
        outcome=kind,
        reason=reason,
        onset_at=onset,
        finished_at=finished,
        seconds_to_promotion=(promoted_at - onset) if promoted_at and onset else None,
        first_model=first,
        production=watcher.last.production,
        traffic=replay.stats.summary(),
        events=watcher.events,
        timeline=str(project.folder / TIMELINE_FILE),
    )
    write_text_atomic(project.folder / TIMELINE_FILE, json.dumps(result.to_json(), indent=2))
    return result


def _keep_running(console: Console, stack: Stack, ports: Ports) -> None:
    console.print(
        "still running (Ctrl-C stops everything): "
        f"gateway http://127.0.0.1:{ports.gateway}, "
        f"Prometheus http://127.0.0.1:{ports.prometheus}, "
        f"Alertmanager http://127.0.0.1:{ports.alertmanager}, "
        f"trigger http://127.0.0.1:{ports.trigger}/status",
        soft_wrap=True,
    )
    try:
        while True:
            stack.check_alive()
            time.sleep(2)
    except KeyboardInterrupt:
        console.print("stopping")


def _watch(
    console: Console,
    watcher: Watcher,
    stack: Stack,
    replay: Replay,
    drifted_rows: list[Any],
    first: str,
    options: Options,
) -> tuple[Outcome, str]:
    """Poll once a second: switch to the drifted period after `steady_s`, stop when the
    loop has ended or `timeout_s` after the onset."""
    from rich.live import Live

    start = time.time()
    onset: float | None = None
    live = Live(console=console, refresh_per_second=2, transient=False)
    printed = 0
    with live if console.is_terminal else ExitStack():
        while True:
            stack.check_alive()
            now = time.time()
            if onset is None and now - start >= options.steady_s:
                replay.switch(drifted_rows, "drift")
                onset = now
                watcher.mark("onset", "drift onset: traffic switches to the shifted period")
            snap = watcher.poll()
            stage = "drifted traffic" if onset else "steady traffic"
            if console.is_terminal:
                live.update(
                    live_view(stage, snap, replay.stats, replay.phase, watcher.events, onset)
                )
            else:  # a log: one line per new event
                for event in watcher.events[printed:]:
                    console.print(event_line(event, onset), highlight=False, soft_wrap=True)
                printed = len(watcher.events)
            ended = _finished(snap, first) if onset else None
            if ended is not None:
                return ended
            if onset is not None and now - onset > options.timeout_s:
                return "timed_out", f"the loop did not finish within {options.timeout_s:.0f} s"
            time.sleep(1.0)
