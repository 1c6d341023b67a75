"""A simulated gateway for controller tests without BentoML: the admin API in memory (the
controller's ``gateway`` constructor parameter) plus the real gateway metric names exported
over HTTP by prometheus_client, driven by a traffic thread that routes requests by the
weight the controller sets. Real Prometheus scrapes it; the analysis runs unchanged.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from kubeloop.serving.metrics import (
    GATEWAY_PREDICTIONS_TOTAL,
    GATEWAY_REQUEST_LATENCY_SECONDS,
    GATEWAY_REQUESTS_TOTAL,
    LATENCY_BUCKETS,
)
from kubeloop.serving.rollout.gateway_client import GatewayUnavailable

TICK_S = 0.05


@dataclass(frozen=True)
class Behaviour:
    """How a simulated model answers: error share, latency, class mix."""

    error_rate: float = 0.0
    latency_s: float = 0.005
    positive_share: float = 0.5  # share of rows predicted "yes" (0.0: constant "no")


GOOD = Behaviour()
ERRORS = Behaviour(error_rate=1.0)
SLOW = Behaviour(latency_s=0.05)  # 10x the stable latency
CONSTANT = Behaviour(positive_share=0.0)


@dataclass
class SimulatedGateway:
    """Admin API + metrics + traffic. `rate` is requests per second (0: no traffic)."""

    stable: str
    behaviours: dict[str, Behaviour] = field(default_factory=dict)  # tag -> behaviour
    rate: float = 100.0
    canary: str | None = None
    weight: float = 0.0
    phase: str = "stable"
    down: set[str] = field(default_factory=set)  # admin calls that fail (unavailable)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    failed_requests: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.m_requests = Counter(
            GATEWAY_REQUESTS_TOTAL.removesuffix("_total"),
            "requests",
            ["variant", "model", "outcome"],
            registry=self.registry,
        )
        self.m_latency = Histogram(
            GATEWAY_REQUEST_LATENCY_SECONDS,
            "latency",
            ["variant", "model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.m_predictions = Counter(
            GATEWAY_PREDICTIONS_TOTAL.removesuffix("_total"),
            "predictions",
            ["variant", "model", "predicted_class"],
            registry=self.registry,
        )
        self._init_series("stable", self.stable)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rng = random.Random(0)
        self.server, _thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.target = f"127.0.0.1:{self.server.server_port}"
        self._traffic = threading.Thread(target=self._run, daemon=True)
        self._traffic.start()

    def close(self) -> None:
        self._stop.set()
        self._traffic.join(timeout=5)
        self.server.shutdown()
        self.server.server_close()

    def _init_series(self, variant: str, tag: str) -> None:
        """Every series of a model at 0 as soon as it is loaded, as the gateway does: a
        series born mid-window loses its first increments to ``increase()``."""
        for outcome in ("ok", "error"):
            self.m_requests.labels(variant=variant, model=tag, outcome=outcome)
        for cls in ("no", "yes"):
            self.m_predictions.labels(variant=variant, model=tag, predicted_class=cls)
        self.m_latency.labels(variant=variant, model=tag)

    # ------------------------------------------------------------------ traffic

    def _run(self) -> None:
        owed = 0.0
        while not self._stop.wait(TICK_S):
            owed += self.rate * TICK_S
            n, owed = int(owed), owed - int(owed)
            for _ in range(n):
                self._request()

    def _request(self) -> None:
        with self._lock:
            on_canary = self.canary is not None and self._rng.random() * 100 < self.weight
            variant = "canary" if on_canary else "stable"
            tag = self.canary if on_canary and self.canary else self.stable
        b = self.behaviours.get(tag, GOOD)
        self.requests += 1
        if self._rng.random() < b.error_rate:
            self.failed_requests += 1
            self.m_requests.labels(variant=variant, model=tag, outcome="error").inc()
            return
        self.m_requests.labels(variant=variant, model=tag, outcome="ok").inc()
        jitter = self._rng.uniform(0.8, 1.2)
        self.m_latency.labels(variant=variant, model=tag).observe(b.latency_s * jitter)
        cls = "yes" if self._rng.random() < b.positive_share else "no"
        self.m_predictions.labels(variant=variant, model=tag, predicted_class=cls).inc()

    # ------------------------------------------------------------------ admin API

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if name in self.down:
            raise GatewayUnavailable(f"simulated gateway: {name} unavailable")

    def calls_of(self, name: str) -> list[Any]:
        return [arg for n, arg in self.calls if n == name]

    def status(self) -> dict[str, Any]:
        self._call("status")
        return self._status()

    def _status(self) -> dict[str, Any]:
        return {
            "stable": {"model": self.stable, "ready": True},
            "canary": {"model": self.canary, "ready": True} if self.canary else None,
            "weights": {"stable": 100.0 - self.weight, "canary": self.weight},
            "shadow_percent": 0.0,
            "phase": self.phase,
        }

    def set_canary(self, model: str) -> dict[str, Any]:
        self._call("set_canary", model)
        self._init_series("canary", model)
        with self._lock:
            self.canary, self.weight, self.phase = model, 0.0, "progressing"
        return self._status()

    def set_weights(self, canary: float, phase: str | None = None) -> dict[str, Any]:
        self._call("set_weights", canary)
        with self._lock:
            self.weight = canary
            self.phase = phase or self.phase
        return self._status()

    def promote(self) -> dict[str, Any]:
        self._call("promote")
        with self._lock:
            assert self.canary is not None, "promote without a canary"
            self.stable, self.canary, self.weight, self.phase = self.canary, None, 0.0, "promoted"
        return self._status()

    def rollback(self) -> dict[str, Any]:
        self._call("rollback")
        with self._lock:
            self.canary, self.weight, self.phase = None, 0.0, "rolled_back"
        return self._status()

    def restart(self) -> None:
        """A gateway restarted without its persisted state: stable only."""
        with self._lock:
            self.canary, self.weight, self.phase = None, 0.0, "stable"
