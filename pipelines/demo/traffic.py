"""Replayed traffic: rows of a period sent to the gateway at a steady rate, their true labels
posted to ``/feedback`` a little later (as ground truth arrives after the prediction).

The rows go through the ingest step's normalisation (the demo data is dirty on purpose, and
the gateway answers malformed rows with a 400), then the label, entity and timestamp columns
are split off: the gateway gets the model's raw features, the label waits in memory.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from kubeloop.components.core.spec import Spec

FEEDBACK_BATCH = 200


@dataclass(frozen=True)
class Row:
    features: dict[str, Any]
    label: Any


def load_rows(spec: Spec, path: Path, *, shuffle: bool = False, seed: int = 0) -> list[Row]:
    """`path`'s rows normalised as ingest does, in time order or shuffled.

    Shuffled for steady traffic: the demo data's tenure grows month by month, so a period
    replayed in time order starts and ends away from the training sample's mix (tenure PSI
    about 0.7 for its last months) and the drift checks rightly flag it."""
    import pandas as pd

    from kubeloop.components.core.io import read_table
    from kubeloop.components.ingest.task import normalize

    d = spec.data
    table, _, _ = normalize(read_table(path), spec)
    if shuffle:
        table = table.sample(frac=1.0, random_state=seed)
    else:
        table = table.sort_values(d.timestamp_column, kind="stable")
    drop = {d.label, d.entity, d.timestamp, d.entity_column, d.timestamp_column}
    features = [c for c in table.columns if c not in drop]
    values = table[features].astype(object).where(table[features].notna(), None)
    labels = table[d.label].tolist()
    return [
        Row({k: _plain(v) for k, v in rec.items()}, _plain(label))
        for rec, label in zip(values.to_dict("records"), labels, strict=True)
        if not pd.isna(label)
    ]


def _plain(value: Any) -> Any:
    """numpy scalars -> Python (JSON) values."""
    return value.item() if hasattr(value, "item") else value


@dataclass
class TrafficStats:
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # "ok:stable", "400", "error"
    labels_posted: int = 0
    labels_failed: int = 0

    def by_variant(self) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in self.answers.items() if k.startswith("ok:")}

    def failed(self) -> int:
        return sum(v for k, v in self.answers.items() if not k.startswith("ok:"))

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.sent,
            "answered_by_variant": self.by_variant(),
            "failed": self.failed(),
            "failed_by_status": {k: v for k, v in self.answers.items() if ":" not in k},
            "labels_posted": self.labels_posted,
            "labels_failed": self.labels_failed,
        }


class Replay:
    """Send rows to `gateway` at `rate` requests/s from `threads` threads until stopped.
    :meth:`switch` changes the rows being replayed (the drift period starts)."""

    def __init__(
        self,
        gateway: str,
        rows: list[Row],
        *,
        rate: float = 20.0,
        threads: int = 4,
        label_delay_s: float = 5.0,
        send_labels: bool = True,
    ) -> None:
        self.gateway = gateway.rstrip("/")
        self.rate = rate
        self.threads = threads
        self.label_delay_s = label_delay_s
        self.send_labels = send_labels
        self.stats = TrafficStats()
        self.phase = "steady"
        self._rows: Iterator[Row] = itertools.cycle(rows)
        self._lock = threading.Lock()
        self._next_at = time.monotonic()
        self._stop = threading.Event()
        self._labels: deque[tuple[float, str, Any]] = deque()  # (due, request id, label)
        self._workers: list[threading.Thread] = []

    def switch(self, rows: list[Row], phase: str) -> None:
        with self._lock:
            self._rows = itertools.cycle(rows)
            self.phase = phase

    def start(self) -> None:
        self._workers = [
            threading.Thread(target=self._send_loop, name=f"traffic-{i}", daemon=True)
            for i in range(self.threads)
        ]
        if self.send_labels:
            self._workers.append(threading.Thread(target=self._label_loop, daemon=True))
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(10)

    def _take(self) -> tuple[Row, str, float]:
        """The next row, its request id and when to send it (paces all threads together)."""
        with self._lock:
            row = next(self._rows)
            due = max(self._next_at, time.monotonic() - 1.0)  # no burst after a stall
            self._next_at = due + 1.0 / self.rate
            return row, f"demo-{self.phase}-{uuid.uuid4().hex[:12]}", due

    def _send_loop(self) -> None:
        with httpx.Client(base_url=self.gateway, timeout=10) as client:
            while not self._stop.is_set():
                row, request_id, due = self._take()
                wait = due - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                key = self._send(client, row, request_id)
                with self._lock:
                    self.stats.sent += 1
                    self.stats.answers[key] += 1
                    if key.startswith("ok:"):
                        self._labels.append(
                            (time.monotonic() + self.label_delay_s, request_id, row.label)
                        )

    @staticmethod
    def _send(client: httpx.Client, row: Row, request_id: str) -> str:
        try:
            r = client.post("/predict", json={"features": row.features, "request_id": request_id})
        except httpx.HTTPError:
            return "error"
        if r.status_code != 200:
            return str(r.status_code)
        return f"ok:{r.json().get('variant', '?')}"

    def _due_labels(self) -> list[dict[str, Any]]:
        now, out = time.monotonic(), list[dict[str, Any]]()
        with self._lock:
            while self._labels and self._labels[0][0] <= now and len(out) < FEEDBACK_BATCH:
                _, request_id, label = self._labels.popleft()
                out.append({"request_id": request_id, "label": label})
        return out

    def _label_loop(self) -> None:
        with httpx.Client(base_url=self.gateway, timeout=10) as client:
            while not self._stop.wait(1.0):
                while batch := self._due_labels():
                    try:
                        ok = client.post("/feedback", json={"labels": batch}).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with self._lock:
                        if ok:
                            self.stats.labels_posted += len(batch)
                        else:
                            self.stats.labels_failed += len(batch)
