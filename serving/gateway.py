"""The gateway: the one endpoint users call, routing rows to the stable or the canary model.

Serve it (``kubeloop serve --spec kubeloop.yaml`` runs this)::

    bentoml serve kubeloop.serving.gateway:Gateway --host 127.0.0.1 --port 3000 \\
        --arg spec=/abs/kubeloop.yaml --arg stable=churn:production --arg canary=churn:v2

Modes (same routing, metrics and log code; see :mod:`kubeloop.serving.backends`):

* embedded (``serve.stable_url`` / ``serve.canary_url`` unset): the gateway loads the models
  itself and scores them through its batchable methods ``score_stable`` / ``score_canary``,
  one adaptive-batching queue per slot;
* remote: the slots are ``ModelVariant`` services at those URLs; ``--arg stable`` /
  ``--arg canary`` then name the tags the services must serve.

Endpoints (JSON):

* ``POST /predict`` ``{"features": {...}}`` or ``{"entity_id": id}`` (+ optional
  ``request_id``) -> one :class:`GatewayPrediction` (prediction, probabilities, threshold,
  model, variant, request_id);
* ``POST /predict_batch`` ``{"rows": [...]}`` or ``{"entity_ids": [...]}`` ->
  ``{"request_id", "predictions": [...]}`` in row order;
* ``POST /feedback`` ``{"labels": [{"request_id", "row", "label"}, ...]}`` -> ground-truth
  labels for answered rows, logged and joined to live quality metrics
  (:mod:`kubeloop.serving.feedback.api`);
* ``/readyz`` (503 until the stable model is ready), ``/livez``, ``/metrics``, and the admin
  API under ``/admin`` (:mod:`kubeloop.serving.admin`).

Routing is sticky (:mod:`kubeloop.serving.routing`): a row's key is its entity id, else the
request id (``request_id`` in the body, else the ``x-request-id`` header, else a new uuid4).
Shadow traffic (``serve.shadow_percent`` of stable rows) is also scored by the canary off the
request path, measured and logged as variant ``shadow``, and never returned.

Errors (always a JSON body): 400 for a malformed body (``detail[].loc`` names the field, e.g.
``["features", "x"]`` or ``["rows", 2, "plan"]``), 404 with ``unknown_entity_ids`` for ids
the online store does not know, 415 for a content type other than JSON, 503 while no stable
model is ready, 502 when a variant (or the online store) fails.

Promotion: embedded, the canary's model simply becomes the stable slot's. Remote, the gateway
cannot redeploy the stable service: promote sends 100 % of traffic to the canary service with
phase ``promoted`` until the stable service is redeployed with the new model (the registry's
``production`` stage has moved) and the gateway restarted or rolled back to 0 %.

The routing state (stable, canary, weight, phase) is persisted atomically to
``<spec.rollouts_dir>/gateway.json`` and restored at start-up; ``--arg stable`` / ``--arg
canary`` override the persisted tags. The gateway keeps that state in memory, so it runs as
one worker process (``workers=1``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import bentoml
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import Spec, load_spec
from kubeloop.components.register import registry
from kubeloop.serving.admin import AdminError, build_admin_app
from kubeloop.serving.backends import (
    LocalBackend,
    RemoteBackend,
    VariantBackend,
    VariantFailed,
)
from kubeloop.serving.drift.live import LiveDrift
from kubeloop.serving.feedback.api import (
    Feedback,
    FeedbackRefused,
    FeedbackRequest,
    FeedbackResponse,
    LabelIn,
)
from kubeloop.serving.feedback.live import LiveQuality
from kubeloop.serving.metrics import GatewayOutcome, GatewayVariant, gateway_metrics
from kubeloop.serving.routing import (
    PHASES,
    Phase,
    RoutingState,
    Slot,
    load_state,
    mirrored,
    route_all,
    save_state,
)
from kubeloop.serving.schemas import (
    GatewayBatchResponse,
    GatewayPrediction,
    PredictBatchRequest,
    Prediction,
    PredictRequest,
    VariantMetadata,
    too_many_rows,
)
from kubeloop.serving.selfcall import call_self

if TYPE_CHECKING:
    from kubeloop.serving.variant import LoadedModel

logger = logging.getLogger(__name__)

SPEC_ENV = "KUBELOOP_SPEC"
LOAD_TIMEOUT_S = 300.0  # an admin call waits this long for a canary to load


class GatewayArgs(BaseModel):
    """``bentoml serve kubeloop.serving.gateway:Gateway --arg key=value``."""

    # Bento arguments are global to one `bentoml serve`: the variant's keys are ignored here.
    model_config = ConfigDict(extra="ignore")

    spec: str | None = Field(default=None, description=f"Spec file; default ${SPEC_ENV}.")
    stable: str | None = Field(
        default=None, description="Stable model (default: persisted, else <name>:production)."
    )
    canary: str | None = Field(default=None, description="Canary model to load at weight 0.")
    max_latency_ms: int = Field(default=1000, ge=1, description="Adaptive batching budget.")


ARGS = bentoml.use_arguments(GatewayArgs)


def _spec_from_args() -> Spec | None:
    path = ARGS.spec or os.environ.get(SPEC_ENV)
    return load_spec(path) if path else None


def _max_batch_size() -> int:
    # Decorator arguments are fixed at import: read the spec named by the arguments, if any.
    try:
        spec = _spec_from_args()
    except KubeloopError:
        return 64  # reported properly by Gateway() below
    return spec.serve.max_batch_size if spec else 64


MAX_BATCH_SIZE = _max_batch_size()


# BentoML passes the request context to a parameter named `ctx` annotated exactly
# `bentoml.Context`; direct calls (tests) have none.
NO_CONTEXT = cast(bentoml.Context, None)


class GatewayError(Exception):
    """An answer other than 200: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail") or body.get("error"))
        self.status = status
        self.body = body


def _invalid(
    err: ValidationError, loc_map: Callable[[tuple[Any, ...]], tuple[Any, ...]]
) -> GatewayError:
    errors = err.errors(include_context=False, include_input=False, include_url=False)
    detail = [{**e, "loc": list(loc_map(tuple(e["loc"])))} for e in errors]
    n = len(detail)
    return GatewayError(400, {"error": f"{n} validation error{'s' * (n != 1)}", "detail": detail})


@dataclass
class _Request:
    """One request being routed: its rows (raw), their routing keys and slots."""

    request_id: str
    raw_rows: list[dict[str, Any]]
    keys: list[str]
    entity_ids: list[Any] | None
    slots: list[Slot] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)


ADMIN_APP = build_admin_app(lambda: bentoml.get_current_service())


@bentoml.service(workers=1)
@bentoml.asgi_app(ADMIN_APP, path="/admin")
class Gateway:
    """Stable | canary routing with metrics, shadow traffic, prediction log and admin API."""

    def __init__(
        self,
        spec: Spec | None = None,
        *,
        stable: str | None = None,
        canary: str | None = None,
        loader: Callable[[str], registry.RegisteredModel] = registry.load,
        lookup: Any | None = None,
        prediction_log: Any | None = None,
        drift: LiveDrift | None = None,
        feedback: Feedback | None = None,
    ) -> None:
        """BentoML calls ``Gateway()``: the spec, stable and canary come from the bento
        arguments. Tests pass them (and a feature lookup / prediction log / drift checks)
        directly."""
        spec = spec or _spec_from_args()
        if spec is None:
            raise KubeloopError(
                "no spec for the gateway: pass `--arg spec=/abs/path/kubeloop.yaml` to "
                f"`bentoml serve` or set ${SPEC_ENV} (or use `kubeloop serve --spec FILE`)"
            )
        self.spec = spec
        self.serve = spec.serve
        self.admin_token_env = spec.serve.admin_token_env
        self.remote = bool(spec.serve.stable_url)
        if spec.serve.canary_url and not self.remote:
            raise KubeloopError(
                "serve.canary_url is set but serve.stable_url is not: remote mode needs both "
                "variant service URLs (or neither, to load the models in the gateway)"
            )
        self._loader = loader
        self.metrics = gateway_metrics()
        self._lookup = lookup  # a FeatureLookup; built on the first entity-id request if None
        self._lookup_key: tuple[str | None, tuple[str, ...]] | None = None
        self._lookup_lock = threading.Lock()  # one opening of the store at a time
        self._log = prediction_log if prediction_log is not None else self._open_log()
        # Live drift checks per variant against the serving model's reference sample (off
        # the request path: windows are filled here, checked in the monitor's thread).
        self._drift = drift if drift is not None else LiveDrift(spec, loader=loader)
        self._drift.start()
        self._feedback = feedback if feedback is not None else self._open_feedback()
        self._admin_lock = asyncio.Lock()
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # The model each in-process batch queue scores with; kept after a swap or rollback
        # so batches already queued still finish.
        self._batch_models: dict[Slot, LoadedModel] = {}

        stable_tag, canary_tag, weight, phase = self._start_state(stable, canary)
        self.slots: dict[Slot, VariantBackend | None] = {
            "stable": self._backend("stable", stable_tag),
            "canary": self._backend("canary", canary_tag) if canary_tag else None,
        }
        self.state = RoutingState(stable=stable_tag, canary=canary_tag, weight=weight, phase=phase)
        self._publish(persist=False)
        if lookup is None and spec.features.enabled and spec.features.online:
            threading.Thread(target=self._warm_lookup, name="feature-lookup", daemon=True).start()

    # ------------------------------------------------------------------ set-up

    def _start_state(
        self, stable: str | None, canary: str | None
    ) -> tuple[str, str | None, float, Phase]:
        """Explicit tags win; else the persisted rollout resumes (a canary in progress keeps
        its weight and phase); else ``<name>:production`` alone."""
        persisted = load_state(self.spec.rollouts_dir)
        explicit = stable or ARGS.stable
        canary = canary or ARGS.canary
        if persisted is None or (explicit and explicit != persisted.stable):
            default = f"{self.spec.name}:production"
            return explicit or default, canary, 0.0, "progressing" if canary else "stable"
        stable_tag = persisted.stable or f"{self.spec.name}:production"
        if canary:
            return stable_tag, canary, 0.0, "progressing"
        if persisted.canary and persisted.phase in ("progressing", "paused", "promoted"):
            return stable_tag, persisted.canary, persisted.weight, persisted.phase
        return stable_tag, None, 0.0, persisted.phase

    def _backend(self, slot: Slot, tag: str | None, admin_call: bool = False) -> VariantBackend:
        max_rows = self.serve.max_rows
        url = self.serve.stable_url if slot == "stable" else self.serve.canary_url
        if self.remote:
            if not url:
                raise AdminError(409, "remote mode: serve.canary_url is not set, no canary")
            # An admin call waits for the answer: a service that is down fails it in a minute.
            return RemoteBackend(
                url, max_rows, expect=tag, deadline_s=60.0 if admin_call else 600.0
            )
        assert tag is not None
        backend = LocalBackend(tag, max_rows, loader=self._loader)
        backend.batch = self._batcher(slot)
        return backend

    def _batcher(self, slot: Slot) -> Callable[[list[dict[str, Any]]], Any]:
        def batch(rows: list[dict[str, Any]]) -> Any:
            # Through BentoML's self-proxy, so concurrent requests meet in the slot's
            # adaptive batching queue. An instance built without BentoML (`Gateway.inner(...)`
            # in tests) has no proxy and scores in a worker thread.
            proxy = getattr(self, "to_async", None)
            if proxy is None:
                return asyncio.to_thread(self._score_batch, slot, rows)
            score = proxy.score_stable if slot == "stable" else proxy.score_canary
            return call_self(lambda: score(rows))

        return batch

    def _open_log(self) -> Any:
        from kubeloop.serving.prediction_log import PredictionLog

        dropped = self.metrics.log_dropped
        return PredictionLog(self.spec.prediction_log_dir, on_drop=lambda n: dropped.inc(n))

    def _open_feedback(self) -> Feedback:
        mon = self.spec.monitor
        live = LiveQuality(self.metrics, window=mon.quality_window, min_labels=mon.min_labels)
        return Feedback(self.spec.feedback_dir, live, max_labels=self.serve.max_rows)

    def _warm_lookup(self) -> None:
        """Open the feature store once the stable model is known, so the first entity-id
        request does not pay for importing and opening Feast (seconds)."""
        try:
            meta = self.wait_ready(LOAD_TIMEOUT_S)
            with self._lookup_lock:
                self._lookup_for(meta)
        except Exception as err:  # retried (and reported) by the first entity-id request
            logger.info("feature lookup not opened at start-up: %s", err)

    def _lookup_for(self, meta: VariantMetadata) -> Any:
        key = (meta.feature_service, tuple(meta.features))
        if self._lookup is None or (self._lookup_key is not None and self._lookup_key != key):
            from kubeloop.serving.feature_lookup import FeatureLookup

            self._lookup = FeatureLookup(
                self.spec, meta.features, feature_service=meta.feature_service
            )
            self._lookup_key = key
        return self._lookup

    def _lookup_rows_sync(self, meta: VariantMetadata, ids: list[Any]) -> list[dict[str, Any]]:
        """Raw rows of `ids` through the model's feature service (the store opens once)."""
        with self._lookup_lock:
            lookup = self._lookup_for(meta)
        rows: list[dict[str, Any]] = lookup.rows(ids)
        return rows

    def _publish(self, *, persist: bool = True) -> None:
        """Metrics follow the routing state; the state file too (after admin changes)."""
        s = self.state
        self.metrics.set_routing(s.weight, s.phase, PHASES)
        if persist:
            save_state(self.spec.rollouts_dir, s)

    # ------------------------------------------------------------------ health

    def _ready(self, slot: Slot) -> VariantBackend | None:
        backend = self.slots[slot]
        return backend if backend is not None and backend.metadata is not None else None

    def __is_ready__(self) -> bool:
        return self._ready("stable") is not None

    def __is_alive__(self) -> bool:
        stable = self.slots["stable"]
        return stable is None or stable.error is None

    def wait_ready(self, timeout: float = 60.0) -> VariantMetadata:
        stable = self.slots["stable"]
        assert stable is not None
        return stable.wait(timeout)

    # ------------------------------------------------------------------ predict

    @bentoml.api(input_spec=PredictRequest, output_spec=GatewayPrediction)
    async def predict(
        self,
        features: dict[str, Any] | None = None,
        entity_id: str | int | None = None,
        request_id: str | None = None,
        ctx: bentoml.Context = NO_CONTEXT,
    ) -> GatewayPrediction | JSONResponse:
        """Score one row (raw features, or an entity id looked up in the online store)."""
        rid = self._request_id(request_id, ctx)
        try:
            if features is not None:
                req = _Request(rid, [features], [rid], None)
                out = await self._handle(req, lambda loc: ("features", *loc[2:]))
            else:
                req = _Request(rid, [], [str(entity_id)], [entity_id])
                out = await self._handle(req, lambda loc: ("entity_id", *loc[2:]))
        except GatewayError as err:
            return self._error(err, ctx)
        return out[0]

    @bentoml.api(input_spec=PredictBatchRequest, output_spec=GatewayBatchResponse)
    async def predict_batch(
        self,
        rows: list[dict[str, Any]] | None = None,
        entity_ids: list[str | int] | None = None,
        request_id: str | None = None,
        ctx: bentoml.Context = NO_CONTEXT,
    ) -> GatewayBatchResponse | JSONResponse:
        """Score rows (raw features, or entity ids), answers in row order."""
        rid = self._request_id(request_id, ctx)
        try:
            if rows is not None:
                req = _Request(rid, rows, [rid] * len(rows), None)
            else:
                ids = list(entity_ids or [])
                req = _Request(rid, [], [str(e) for e in ids], ids)
            out = await self._handle(req, lambda loc: loc)
        except GatewayError as err:
            return self._error(err, ctx)
        return GatewayBatchResponse(request_id=rid, predictions=out)

    @bentoml.api(input_spec=FeedbackRequest, output_spec=FeedbackResponse)
    async def feedback(
        self, labels: list[LabelIn], ctx: bentoml.Context = NO_CONTEXT
    ) -> FeedbackResponse | JSONResponse:
        """Ground-truth labels of answered rows: logged, then joined to live quality."""
        stable = self._ready("stable")
        try:
            return await self._feedback.receive(labels, stable.metadata if stable else None)
        except FeedbackRefused as err:
            return self._error(GatewayError(err.status, err.body), ctx)

    @staticmethod
    def _request_id(given: str | None, ctx: bentoml.Context | None) -> str:
        if given:
            return given
        header = ctx.request.headers.get("x-request-id") if ctx is not None else None
        return header[:200] if header else uuid.uuid4().hex

    @staticmethod
    def _error(err: GatewayError, ctx: bentoml.Context | None) -> JSONResponse:
        if ctx is not None:  # BentoML copies the context's status onto the response
            ctx.response.status_code = err.status
        return JSONResponse(err.body, status_code=err.status)

    def _count(self, req: _Request, slots: Sequence[Slot], outcome: GatewayOutcome) -> None:
        for slot in dict.fromkeys(slots):
            backend = self.slots[slot]
            model = self._model_label(backend)
            self.metrics.observe_request(slot, model, outcome, time.perf_counter() - req.started)

    @staticmethod
    def _model_label(backend: VariantBackend | None) -> str:
        if backend is None:
            return ""
        meta = backend.metadata
        return meta.tag if meta is not None else backend.requested

    async def _handle(
        self, req: _Request, loc_map: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    ) -> list[GatewayPrediction]:
        stable = self._ready("stable")
        if stable is None:
            self._count(req, ["stable"], "unavailable")
            backend = self.slots["stable"]
            why = (backend.error if backend else None) or "still loading"
            raise GatewayError(503, {"detail": f"no stable model is ready ({why})"})
        canary = self._ready("canary")
        weight = self.state.weight if canary is not None else 0.0
        req.slots = route_all(req.keys, weight)
        n = len(req.keys)
        if n > self.serve.max_rows:
            self._count(req, req.slots, "invalid")
            field = "rows" if req.entity_ids is None else "entity_ids"
            raise _invalid(too_many_rows("request", n, self.serve.max_rows, (field,)), loc_map)
        meta = stable.metadata
        validator = stable.validator
        assert meta is not None and validator is not None
        if req.entity_ids is not None:
            req.raw_rows = await self._lookup_rows(req, meta)
        try:
            valid = validator.validate(req.raw_rows)
        except ValidationError as err:
            self._count(req, req.slots, "invalid")
            if req.entity_ids is not None:  # the store's values, not the caller's input
                raise GatewayError(
                    502, {"detail": f"online features do not fit model {meta.tag}: {err}"}
                ) from err
            raise _invalid(err, loc_map) from err

        groups: dict[Slot, list[int]] = collections.defaultdict(list)
        for i, slot in enumerate(req.slots):
            groups[slot].append(i)
        answers = await asyncio.gather(
            *(self._score_slot(req, slot, [valid[i] for i in idx]) for slot, idx in groups.items())
        )
        out: list[GatewayPrediction | None] = [None] * n
        failed: list[str] = []
        for (slot, idx), answer in zip(groups.items(), answers, strict=True):
            if isinstance(answer, str):
                failed.append(answer)
                continue
            for i, p in zip(idx, answer, strict=True):
                out[i] = GatewayPrediction(
                    **p.model_dump(), variant=slot, request_id=req.request_id
                )
        if failed:
            raise GatewayError(502, {"detail": "; ".join(failed)})
        predictions = cast(list[GatewayPrediction], out)
        variants = [p.variant for p in predictions]
        self._log_predictions(req, predictions, variants, shadow=False)
        self._feedback.remember(req.request_id, range(n), predictions, variants, meta, shadow=False)
        for slot, idx in groups.items():
            self._observe_drift(slot, [valid[i] for i in idx], [predictions[i] for i in idx])
        if canary is not None and self.serve.shadow_percent > 0:
            self._mirror(req, valid, canary)
        return predictions

    async def _lookup_rows(self, req: _Request, meta: VariantMetadata) -> list[dict[str, Any]]:
        from kubeloop.serving.feature_lookup import UnknownEntities

        assert req.entity_ids is not None
        started = time.perf_counter()
        try:
            rows = await asyncio.to_thread(self._lookup_rows_sync, meta, req.entity_ids)
        except UnknownEntities as err:
            self._count(req, req.slots, "not_found")
            unknown = list(err.ids)
            raise GatewayError(
                404,
                {
                    "detail": f"{len(unknown)} entity id(s) unknown to the online feature store",
                    "unknown_entity_ids": unknown,
                },
            ) from err
        except Exception as err:  # the store itself failed: not the caller's fault
            self._count(req, req.slots, "error")
            logger.exception("feature lookup failed")
            raise GatewayError(502, {"detail": f"online feature lookup failed: {err}"}) from err
        finally:
            self.metrics.lookup.observe(time.perf_counter() - started)
        return rows

    async def _score_slot(
        self, req: _Request, slot: Slot, rows: list[dict[str, Any]]
    ) -> list[Prediction] | str:
        """One slot's rows scored and measured; the error text if the variant failed."""
        backend = self.slots[slot]
        assert backend is not None
        if isinstance(backend, LocalBackend) and backend.loaded is not None:
            self._batch_models[slot] = backend.loaded
        self.metrics.observe_rows(slot, len(rows))
        try:
            predictions = await backend.score(rows)
        except VariantFailed as err:
            logger.warning("gateway: %s variant failed: %s", slot, err)
            self._count(req, [slot], "error")
            return f"{slot} variant failed: {err}"
        self._observe(slot, backend, req.started, predictions)
        return predictions

    def _observe(
        self,
        variant: GatewayVariant,
        backend: VariantBackend,
        started: float,
        predictions: list[Prediction],
    ) -> None:
        meta = backend.metadata
        assert meta is not None
        model = predictions[0].model if predictions else meta.tag
        m = self.metrics
        m.observe_request(variant, model, "ok", time.perf_counter() - started)
        if meta.task == "regression":
            m.observe_values(variant, model, (float(p.prediction) for p in predictions))
            return
        counts = collections.Counter(str(p.prediction) for p in predictions)
        m.observe_classes(variant, model, counts.items())
        if meta.task == "binary":
            positive = str(meta.classes[1])
            m.observe_scores(
                variant, model, ((p.probabilities or {}).get(positive, 0.0) for p in predictions)
            )

    # ------------------------------------------------------------------ shadow + log

    def _mirror(self, req: _Request, valid: list[dict[str, Any]], canary: VariantBackend) -> None:
        idx = [
            i
            for i, (slot, key) in enumerate(zip(req.slots, req.keys, strict=True))
            if slot == "stable" and mirrored(key, self.serve.shadow_percent)
        ]
        if idx:
            task = asyncio.create_task(self._shadow(req, idx, [valid[i] for i in idx], canary))
            self._shadow_tasks.add(task)  # keep a reference until it ends
            task.add_done_callback(self._shadow_tasks.discard)

    async def _shadow(
        self, req: _Request, idx: list[int], rows: list[dict[str, Any]], canary: VariantBackend
    ) -> None:
        started = time.perf_counter()
        if isinstance(canary, LocalBackend) and canary.loaded is not None:
            self._batch_models["canary"] = canary.loaded
        self.metrics.observe_rows("shadow", len(rows))
        try:
            predictions = await canary.score(rows)
        except VariantFailed as err:
            logger.warning("gateway: shadow scoring failed: %s", err)
            self.metrics.observe_request(
                "shadow", self._model_label(canary), "error", time.perf_counter() - started
            )
            return
        self._observe("shadow", canary, started, predictions)
        sub = _Request(
            req.request_id,
            [req.raw_rows[i] for i in idx],
            [req.keys[i] for i in idx],
            [req.entity_ids[i] for i in idx] if req.entity_ids is not None else None,
        )
        self._log_predictions(sub, predictions, ["shadow"] * len(idx), shadow=True, rows=idx)
        if canary.metadata is not None:
            shadows = ["shadow"] * len(idx)
            self._feedback.remember(
                req.request_id, idx, predictions, shadows, canary.metadata, shadow=True
            )
        self._observe_drift("shadow", rows, predictions)

    def _observe_drift(
        self, variant: str, rows: Sequence[dict[str, Any]], predictions: Sequence[Prediction]
    ) -> None:
        if not predictions:
            return
        try:
            self._drift.observe(variant, predictions[0].model, rows, predictions)
        except Exception:  # drift checks never fail a request
            logger.exception("gateway: drift observation failed")

    def _log_predictions(
        self,
        req: _Request,
        predictions: Sequence[Prediction],
        variants: Sequence[str],
        *,
        shadow: bool,
        rows: Sequence[int] | None = None,
    ) -> None:
        from kubeloop.serving.prediction_log import PredictionRecord

        ts = datetime.now(UTC)
        records = [
            PredictionRecord(
                ts=ts,
                request_id=req.request_id,
                row=rows[i] if rows is not None else i,
                variant=variants[i],
                model=p.model,
                entity_id=str(req.entity_ids[i]) if req.entity_ids is not None else None,
                features=json.dumps(req.raw_rows[i], default=str),
                prediction=json.dumps(p.prediction),
                probabilities=json.dumps(p.probabilities) if p.probabilities is not None else None,
                shadow=shadow,
            )
            for i, p in enumerate(predictions)
        ]
        try:
            self._log.log(records)
        except Exception:  # the log never fails a request
            logger.exception("prediction log: records lost")

    # ------------------------------------------------------------------ batched scoring

    def _score_batch(self, slot: Slot, rows: list[dict[str, Any]]) -> list[Prediction]:
        model = self._batch_models.get(slot)
        if model is None:
            raise ServiceUnavailable(f"no {slot} model is loaded")
        if not rows:
            return []
        return model.score(rows)[0]

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=ARGS.max_latency_ms)
    def score_stable(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        """The stable slot's batched model call (validated rows; not the public contract)."""
        return self._score_batch("stable", rows)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=ARGS.max_latency_ms)
    def score_canary(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        """The canary slot's batched model call (validated rows; not the public contract)."""
        return self._score_batch("canary", rows)

    # ------------------------------------------------------------------ admin

    def status(self) -> dict[str, Any]:
        s = self.state

        def slot(name: Slot) -> dict[str, Any] | None:
            backend = self.slots[name]
            if backend is None:
                return None
            return {
                "model": self._model_label(backend),
                "ready": backend.metadata is not None,
                "error": backend.error,
            }

        return {
            "mode": "remote" if self.remote else "in-process",
            "stable": slot("stable"),
            "canary": slot("canary"),
            "weights": {"stable": 100.0 - s.weight, "canary": s.weight},
            "shadow_percent": self.serve.shadow_percent,
            "phase": s.phase,
        }

    def _set_state(self, **changes: Any) -> dict[str, Any]:
        self.state = replace(self.state, **changes)
        self._publish()
        logger.info("gateway routing: %s", self.state)
        return self.status()

    async def set_canary(self, model: str) -> dict[str, Any]:
        async with self._admin_lock:
            stable = self._ready("stable")
            if stable is None:
                raise AdminError(503, "no stable model is ready yet; retry once /readyz is 200")
            backend = self._backend("canary", model, admin_call=True)
            try:
                meta = await asyncio.to_thread(backend.wait, LOAD_TIMEOUT_S)
            except KubeloopError as err:
                await backend.aclose()
                raise AdminError(409, f"canary {model!r} cannot be used: {err}") from err
            assert stable.metadata is not None
            diff = incompatibility(stable.metadata, meta)
            if diff:
                await backend.aclose()
                raise AdminError(
                    409,
                    f"canary {meta.tag} is not compatible with stable "
                    f"{stable.metadata.tag}: {diff}",
                )
            old, self.slots["canary"] = self.slots["canary"], backend
            if old is not None and old is not backend:
                await old.aclose()
            return self._set_state(canary=meta.tag, weight=0.0, phase="progressing")

    async def set_weights(self, canary: float, phase: Phase | None) -> dict[str, Any]:
        async with self._admin_lock:
            if canary > 0 and self._ready("canary") is None:
                raise AdminError(
                    409, 'no canary is loaded: POST /admin/canary {"model": TAG} first'
                )
            return self._set_state(weight=float(canary), phase=phase or self.state.phase)

    async def promote(self) -> dict[str, Any]:
        async with self._admin_lock:
            canary = self._ready("canary")
            if canary is None or canary.metadata is None:
                raise AdminError(409, "no canary is loaded: nothing to promote")
            if self.remote:
                # The stable service cannot be replaced from here: all traffic goes to the
                # canary service until the stable one is redeployed (see the module doc).
                return self._set_state(weight=100.0, phase="promoted")
            old = self.slots["stable"]
            assert isinstance(canary, LocalBackend)
            canary.batch = self._batcher("stable")
            self.slots["stable"], self.slots["canary"] = canary, None
            if old is not None:
                await old.aclose()
            return self._set_state(
                stable=canary.metadata.tag, canary=None, weight=0.0, phase="promoted"
            )

    async def rollback(self) -> dict[str, Any]:
        async with self._admin_lock:
            old, self.slots["canary"] = self.slots["canary"], None
            if old is not None:
                await old.aclose()
            return self._set_state(canary=None, weight=0.0, phase="rolled_back")

    def close(self) -> None:
        """Write what the prediction log holds and stop its writer and the drift checks."""
        self._drift.stop()
        self._log.close()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.close()


class JsonOnly:
    """ASGI middleware: the prediction endpoints take JSON only. Any other declared content
    type (form, multipart, BentoML's pickle) is a 415 with a JSON body, instead of reaching
    a BentoML parser that may fail with a 500 on a body it cannot read."""

    PATHS = frozenset({"/predict", "/predict_batch", "/feedback"})

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.PATHS:
            raw = dict(scope["headers"]).get(b"content-type", b"")
            media = raw.decode("latin-1").split(";")[0].strip().lower()
            if media not in ("", "application/json"):
                resp = JSONResponse(
                    {
                        "detail": f"unsupported content type {media!r}: send JSON with "
                        "`Content-Type: application/json`"
                    },
                    status_code=415,
                )
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


Gateway.add_asgi_middleware(JsonOnly)  # type: ignore[attr-defined]  # a bentoml Service


def incompatibility(stable: VariantMetadata, canary: VariantMetadata) -> str:
    """What differs between two models that must answer the same requests ("" if nothing)."""
    diffs = []
    for attr in ("name", "task", "features", "feature_kinds", "classes"):
        a, b = getattr(stable, attr), getattr(canary, attr)
        if a != b:
            diffs.append(f"{attr} {a!r} vs {b!r}")
    return "; ".join(diffs)
