"""One canary analysis: every check of ``serve.analysis`` over one window, through Prometheus.

Verdict, in this order:

1. ``prometheus-unavailable``: a query could not be answered; nothing is known (hold, retry);
2. ``insufficient-data``: either variant served fewer than ``serve.min_requests`` judged
   requests in its window (the traffic gate, always run first);
3. ``fail``: a check has a number outside its bounds;
4. ``insufficient-data``: a check has no number (empty result or NaN: no data is never a pass;
   ``live_quality_delta`` with fewer than ``serve.min_labels`` labelled rows per variant);
5. ``pass``.

A failing check with data is decisive even when another check has no data (a canary whose
every request fails has no latency to compare, and must still fail).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from kubeloop.components.core.spec import AnalysisCheck, ServeSpec
from kubeloop.serving.rollout.prometheus import PrometheusClient, PrometheusUnavailable, QueryError
from kubeloop.serving.rollout.quality import quality_delta
from kubeloop.serving.rollout.templates import (
    LATENCY_P99_RATIO,
    PREDICTED_CLASSES,
    PREDICTED_VALUES,
    REQUESTS,
    SUCCESS_RATE,
    bucket_counts,
    class_counts,
    fill,
    psi,
    window,
)

Verdict = Literal["pass", "fail", "insufficient-data", "prometheus-unavailable"]


class CheckResult(BaseModel):
    """One check of one analysis: what was asked, what came back, and the bound."""

    name: str
    query: str
    value: float | None  # None: no data (empty result or NaN)
    min: float | None = None
    max: float | None = None
    passed: bool | None  # None: no data, so neither passed nor failed
    note: str = ""


class AnalysisResult(BaseModel):
    verdict: Verdict
    reason: str
    at: datetime
    window: str  # the canary's PromQL range
    stable_window: str  # the stable baseline's range
    checks: list[CheckResult]

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.passed is False]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _judge(value: float | None, lo: float | None, hi: float | None) -> bool | None:
    if value is None:
        return None
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def _single_query(check: AnalysisCheck, args: dict[str, str]) -> str:
    """The one-number PromQL of a check: a built-in template or the spec's own query."""
    if check.name == "success_rate":
        canary = {"variant": "canary", "model": args["canary"], "window": args["window"]}
        return SUCCESS_RATE.render(**canary)
    if check.name == "latency_p99_ratio":
        return LATENCY_P99_RATIO.render(**args)
    assert check.query is not None  # the spec requires a query for non-built-ins
    return fill(check.query, {**args, "model": args["canary"]})


class Analysis:
    """Runs ``serve.analysis`` for one (stable, canary) pair of model tags."""

    def __init__(self, prometheus: PrometheusClient, serve: ServeSpec) -> None:
        self.prometheus = prometheus
        self.serve = serve

    def run(
        self,
        *,
        stable: str,
        canary: str,
        window_s: float,
        stable_window_s: float,
        at: datetime,
    ) -> AnalysisResult:
        args = {
            "stable": stable,
            "canary": canary,
            "variant": "canary",
            "window": window(window_s),
            "stable_window": window(stable_window_s),
        }
        checks: list[CheckResult] = []

        def result(verdict: Verdict, reason: str) -> AnalysisResult:
            return AnalysisResult(
                verdict=verdict,
                reason=reason,
                at=at,
                window=args["window"],
                stable_window=args["stable_window"],
                checks=checks,
            )

        try:
            checks.extend(self._traffic(args))
            for check in self.serve.analysis:
                checks.append(self._check(check, args))
        except PrometheusUnavailable as err:
            return result("prometheus-unavailable", str(err))
        low = [c for c in checks if c.name.startswith("requests_") and c.passed is not True]
        if low:
            seen = ", ".join(f"{c.name.removeprefix('requests_')} {c.value or 0:.0f}" for c in low)
            return result(
                "insufficient-data",
                f"too little traffic: {seen} judged request(s), "
                f"need {self.serve.min_requests} per variant",
            )
        failed = [c for c in checks if c.passed is False]
        if failed:
            return result("fail", "; ".join(_describe(c) for c in failed))
        missing = [c.name for c in checks if c.passed is None]
        if missing:
            return result("insufficient-data", f"no data for {', '.join(missing)}")
        return result("pass", "every check within its bounds")

    # ------------------------------------------------------------------ checks

    def _traffic(self, args: dict[str, str]) -> list[CheckResult]:
        out = []
        for variant in ("stable", "canary"):
            query = REQUESTS.render(
                variant=variant,
                model=args[variant],
                window=args["window" if variant == "canary" else "stable_window"],
            )
            raw = self.prometheus.value(query)
            value = raw if math.isfinite(raw) else 0.0  # no series: no requests
            out.append(
                CheckResult(
                    name=f"requests_{variant}",
                    query=query,
                    value=value,
                    min=float(self.serve.min_requests),
                    passed=_judge(value, self.serve.min_requests, None),
                )
            )
        return out

    def _check(self, check: AnalysisCheck, args: dict[str, str]) -> CheckResult:
        if check.name == "prediction_psi":
            return self._psi(check, args)
        if check.name == "live_quality_delta":
            value, query, note = quality_delta(self.prometheus, args, self.serve.min_labels)
        else:
            query, note = _single_query(check, args), ""
            try:
                value = _finite(self.prometheus.value(query))
            except QueryError as err:  # a spec check that Prometheus refuses: no data, say why
                value, note = None, str(err)
        return CheckResult(
            name=check.name,
            query=query,
            value=value,
            min=check.min,
            max=check.max,
            passed=_judge(value, check.min, check.max),
            note=note,
        )

    def _psi(self, check: AnalysisCheck, args: dict[str, str]) -> CheckResult:
        """PSI of the canary's prediction distribution against stable's: class counts for
        classifiers, value-histogram buckets for regressors (whichever the models report)."""
        notes = []
        for template, to_counts in (
            (PREDICTED_CLASSES, class_counts),
            (PREDICTED_VALUES, bucket_counts),
        ):
            queries = {
                variant: template.render(
                    variant=variant,
                    model=args[variant],
                    window=args["window" if variant == "canary" else "stable_window"],
                )
                for variant in ("stable", "canary")
            }
            counts = {v: to_counts(self.prometheus.query(q)) for v, q in queries.items()}
            if any(sum(c.values()) > 0 for c in counts.values()):
                value = _finite(psi(counts["stable"], counts["canary"]))
                notes.append(f"{template.name}: stable {_fmt(counts['stable'])}")
                notes.append(f"canary {_fmt(counts['canary'])}")
                return CheckResult(
                    name=check.name,
                    query=" ; ".join(queries.values()),
                    value=value,
                    min=check.min,
                    max=check.max,
                    passed=_judge(value, check.min, check.max),
                    note=", ".join(notes),
                )
        return CheckResult(
            name=check.name,
            query=" ; ".join(
                t.render(variant="canary", model=args["canary"], window=args["window"])
                for t in (PREDICTED_CLASSES, PREDICTED_VALUES)
            ),
            value=None,
            min=check.min,
            max=check.max,
            passed=None,
            note="no prediction counts for either variant",
        )


def _fmt(counts: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.0f}" for k, v in sorted(counts.items()) if v > 0) + "}"


def _describe(check: CheckResult) -> str:
    bounds = []
    if check.min is not None:
        bounds.append(f">= {check.min:g}")
    if check.max is not None:
        bounds.append(f"<= {check.max:g}")
    value = "no data" if check.value is None else f"{check.value:.4g}"
    return f"{check.name} = {value}, expected {' and '.join(bounds)}"
