"""A thin client for the Prometheus HTTP API (instant queries only).

Two kinds of failure, kept apart because the controller treats them differently:

* :class:`PrometheusUnavailable`: the server cannot be reached, times out, answers 5xx or
  something that is not its API's JSON. Nothing is known about the canary: hold and retry,
  never promote blind.
* :class:`QueryError`: Prometheus answered and refused the query (400/422: bad PromQL, e.g.
  a typo in a spec check). Retrying will not help; the message names the query.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from kubeloop.components.core.errors import KubeloopError

DEFAULT_TIMEOUT_S = 5.0


class PrometheusUnavailable(KubeloopError):
    """Prometheus cannot answer right now (unreachable, timeout, 5xx, garbled reply)."""


class QueryError(KubeloopError):
    """Prometheus refused a query (bad PromQL)."""


Sample = tuple[dict[str, str], float]  # (labels, value) of one series


class PrometheusClient:
    """``query(promql)`` -> a list of (labels, value); a scalar result is one unlabelled sample.

    NaN values are returned as they are (``math.nan``): callers decide that NaN means "no
    data", never a number that passes a threshold."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def query(self, promql: str) -> list[Sample]:
        try:
            reply = self._http.get("/api/v1/query", params={"query": promql})
        except httpx.HTTPError as err:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} is unreachable ({type(err).__name__}: {err})"
            ) from err
        if reply.status_code >= 500:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered {reply.status_code}: {reply.text[:300]}"
            )
        try:
            body: dict[str, Any] = reply.json()
        except ValueError:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered {reply.status_code} with a non-JSON body "
                f"(is this the Prometheus URL?): {reply.text[:200]!r}"
            ) from None
        if body.get("status") != "success":
            if reply.status_code in (400, 422):
                raise QueryError(
                    f"Prometheus refused the query {promql!r}: "
                    f"{body.get('errorType')}: {body.get('error')}"
                )
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered {reply.status_code}: {str(body)[:300]}"
            )
        return _samples(body.get("data"), self.url)

    def value(self, promql: str) -> float:
        """The one number `promql` returns; NaN for an empty result.

        More than one series is a :class:`QueryError`: a check must reduce to one number
        (wrap it in ``sum(...)`` or select one series)."""
        samples = self.query(promql)
        if not samples:
            return math.nan
        if len(samples) > 1:
            labels = [s[0] for s in samples[:3]]
            raise QueryError(
                f"query {promql!r} returned {len(samples)} series (e.g. {labels}); "
                "a check must return one number: aggregate it, e.g. sum(...)"
            )
        return samples[0][1]


def _samples(data: Any, url: str) -> list[Sample]:
    try:
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [({}, float(result[1]))]
        if kind == "vector":
            return [(dict(s["metric"]), float(s["value"][1])) for s in result]
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    raise PrometheusUnavailable(
        f"Prometheus at {url} sent an instant-query result kubeloop cannot read: {str(data)[:200]}"
    )
