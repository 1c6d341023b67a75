"""What the demo shows: one snapshot of the loop per poll, and the timeline of its firsts.

Everything is read where the loop's parts keep it — Prometheus (drift gauges and the
``ALERTS`` series), the trigger's state file, the run records, the rollout state and the
model registry — so the demo watches the same things an operator would.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kubeloop.components.core.spec import Spec
from kubeloop.serving.drift.metrics import DRIFT_SCORE, DRIFT_WINDOW_DRIFTED, DRIFT_WINDOW_ROWS

DRIFT_ALERT = "ModelDriftDetected"


@dataclass
class Event:
    at: float  # time.time()
    what: str
    link: str | None = None


@dataclass
class Snapshot:
    production: str | None = None
    drifted: float | None = None  # 0/1 of the stable window, None before the first check
    window_rows: float | None = None
    top_drift: list[tuple[str, float]] = field(default_factory=list)  # (feature, PSI)
    alerts: dict[str, str] = field(default_factory=dict)  # alert name -> pending | firing
    request: dict[str, Any] | None = None  # the latest retrain request (trigger state)
    run: dict[str, Any] | None = None  # its pipeline run record
    rollout: dict[str, Any] | None = None  # the current rollout state
    errors: list[str] = field(default_factory=list)  # what could not be read this poll


class Watcher:
    """Polls the loop's state; :meth:`poll` returns a snapshot and adds new timeline events."""

    def __init__(self, spec: Spec, prometheus_url: str) -> None:
        self.spec = spec
        self.prometheus = httpx.Client(base_url=prometheus_url, timeout=5)
        self.events: list[Event] = []
        self._seen: set[str] = set()
        self.last = Snapshot()
        # Drift and the alert come and go (a false alarm clears): their changes are events.
        self._drifted = False
        self._alert: str | None = None

    def close(self) -> None:
        self.prometheus.close()

    def mark(self, key: str, what: str, link: str | None = None) -> None:
        """Record `what` the first time `key` happens."""
        if key not in self._seen:
            self._seen.add(key)
            self.events.append(Event(time.time(), what, link))

    def seen(self, key: str) -> bool:
        return key in self._seen

    # ------------------------------------------------------------------ reading

    def _query(self, promql: str) -> list[dict[str, Any]]:
        body = self.prometheus.get("/api/v1/query", params={"query": promql}).json()
        result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
        return result

    def _prometheus(self, snap: Snapshot) -> None:
        stable = 'variant="stable"'
        drifted = self._query(f"max({DRIFT_WINDOW_DRIFTED}{{{stable}}})")
        snap.drifted = float(drifted[0]["value"][1]) if drifted else None
        rows = self._query(f"max({DRIFT_WINDOW_ROWS}{{{stable}}})")
        snap.window_rows = float(rows[0]["value"][1]) if rows else None
        top = self._query(f'topk(3, max by (feature) ({DRIFT_SCORE}{{{stable},feature!~"__.*"}}))')
        snap.top_drift = [(r["metric"].get("feature", "?"), float(r["value"][1])) for r in top]
        for r in self._query('ALERTS{alertstate=~"pending|firing"}'):
            snap.alerts[r["metric"]["alertname"]] = r["metric"]["alertstate"]

    def _files(self, snap: Snapshot) -> None:
        from kubeloop.components.register.registry import by_stage
        from kubeloop.components.tracking.store import RunStore
        from kubeloop.serving.rollout.state import StateStore as RolloutStore
        from kubeloop.serving.trigger.state import StateStore as TriggerStore

        production = by_stage(self.spec.name, "production")
        snap.production = production[0].tag if production else None
        requests = TriggerStore(Path(self.spec.workdir) / "trigger").load().requests
        if requests:
            snap.request = requests[-1].model_dump(mode="json")
            run_id = requests[-1].run_id
            if run_id:
                try:
                    snap.run = RunStore.for_spec(self.spec).get(run_id).model_dump(mode="json")
                except Exception:  # not written yet
                    snap.run = None
        rollout = RolloutStore(self.spec.rollouts_dir).load()
        snap.rollout = rollout.model_dump(mode="json") if rollout else None

    def poll(self) -> Snapshot:
        snap = Snapshot()
        try:
            self._prometheus(snap)
        except (httpx.HTTPError, ValueError, KeyError) as err:
            snap.errors.append(f"prometheus: {err}")
        try:
            self._files(snap)
        except Exception as err:  # a file caught mid-write is read again next poll
            snap.errors.append(f"state: {err}")
        self.record(snap)
        self.last = snap
        return snap

    # ------------------------------------------------------------------ timeline

    def record(self, snap: Snapshot) -> None:
        """Add the timeline events `snap` shows for the first time."""
        now = time.time()
        if snap.drifted is not None and bool(snap.drifted) != self._drifted:
            self._drifted = bool(snap.drifted)
            features = ", ".join(f"{f} PSI {v:.2f}" for f, v in snap.top_drift)
            self.events.append(
                Event(now, f"drift detected in the stable window ({features})")
                if self._drifted
                else Event(now, "drift cleared: the stable window passes its checks again")
            )
        state = snap.alerts.get(DRIFT_ALERT)
        if state != self._alert:
            self._alert = state
            what = {
                "pending": "pending (the rule's `for` runs)",
                "firing": "firing → Alertmanager → trigger",
                None: "inactive",
            }[state]
            self.events.append(Event(now, f"alert {DRIFT_ALERT} {what}"))
        request = snap.request
        if request:
            alerts = ", ".join(sorted({a["name"] for a in request["alerts"]}))
            self.mark("accepted", f"trigger accepted retrain request {request['id']} ({alerts})")
            if request.get("run_id"):
                self.mark("run", f"retraining run {request['run_id']} started")
        run = snap.run
        if run and run.get("gate"):
            gate = run["gate"]
            verdict = "passed" if gate.get("passed") else "failed"
            reasons = "; ".join(gate.get("reasons", []))
            self.mark(
                "gate",
                f"evaluation gate {verdict}: {run.get('primary_metric')} "
                f"{run['metrics'].get(run.get('primary_metric') or '', float('nan')):.4f}"
                + (f" ({reasons})" if reasons else "")
                + _training_rows(run),
                run.get("artifacts", {}).get("report"),
            )
        if request and request["status"] == "done":
            self.mark(
                "decided",
                f"retraining finished: {request['outcome']}",
                request.get("decision"),
            )
        rollout = snap.rollout
        if rollout and self.seen("accepted"):
            self.mark("canary", f"canary rollout {rollout['canary']} started")
            self.mark(
                f"step-{rollout['step']}",
                f"canary step {rollout['step'] + 1}/{len(rollout['serve']['canary_steps'])}: "
                f"{rollout['weight']:g}% of traffic",
            )
            if rollout["phase"] in ("promoted", "rolled_back"):
                self.mark(rollout["phase"], f"canary {rollout['phase']}", rollout["decision_file"])


def _training_rows(run: dict[str, Any]) -> str:
    """What the run ingested, from its ingest audit (kfp.local keeps task outputs side by
    side: ``<pipeline root>/<pipeline run>/<task>/<output>``); empty if not found."""
    model = run.get("artifacts", {}).get("model")
    if not model:
        return ""
    try:
        audit = json.loads((Path(model).parents[1] / "ingest" / "audit").read_text())
    except (OSError, ValueError):
        return ""
    return (
        f"; ingested {audit.get('rows_out', '?')} rows, "
        f"{audit.get('feedback_rows', 0)} of them labelled serving traffic"
    )
