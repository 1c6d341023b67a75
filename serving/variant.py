"""A model variant: one registered model behind a BentoML 1.4 service.

Serve it (the tag may be ``name:version``, ``name:latest`` or a stage alias such as
``name:production``; aliases are resolved once, at load, and answers name the real tag)::

    bentoml serve kubeloop.serving.variant:ModelVariant --host 127.0.0.1 --port 3000 \\
        --arg model=churn:production --arg max_batch_size=64

Arguments come in through ``bentoml.use_arguments`` (:class:`VariantArgs`: ``--arg key=value``
or ``--arg-file args.yaml``); the model tag falls back to ``$KUBELOOP_MODEL_TAG``. The model
store is ``$BENTOML_HOME`` (see :mod:`kubeloop.components.register.registry`).

Endpoints (all POST, JSON):

* ``/predict`` ``{"rows": [{feature: value, ...}, ...]}`` -> ``[Prediction, ...]``: RAW feature
  rows, validated against the model's own row model (every feature present, null allowed and
  imputed by the registered clean params, no other keys, finite numbers, text or numbers for
  categoricals, 1 .. ``max_rows`` rows). Any violation is a 400 whose ``detail[].loc`` names
  the row and field (``["rows", 2, "age"]``); never a 500.
* ``/score``: the batchable inner method ``predict`` hands validated rows to. BentoML's adaptive
  batching merges concurrent calls into one model call of up to ``max_batch_size`` rows. It is
  reachable over HTTP (every ``@bentoml.api`` is) but is not the public contract: it trusts its
  rows and treats anything unparseable as missing rather than failing, because one failing
  call would fail every request merged into the same batch. ``--arg adaptive_batching=false``
  bypasses the dispatcher: each request is its own model call (a baseline for benchmarks).
* ``/metadata`` ``{}`` -> :class:`VariantMetadata` (tag, task, classes, features, feature
  service, metrics) for a gateway's compatibility check.
* Fault injection (drills and tests, off by default, logged loudly when on):
  ``--arg fault_error_rate=0.2`` (that share of ``/predict`` calls answer 500),
  ``--arg fault_delay_ms=200`` (sleep before answering), ``--arg fault_constant=true``
  (every row gets the first class, or 0.0 for regression).
* ``/readyz`` is 503 until the model is loaded (``__is_ready__``); ``/livez`` turns 503 if
  loading failed (``__is_alive__``), so Kubernetes restarts the pod; ``/metrics`` adds the
  ``kubeloop_variant_*`` series of :mod:`kubeloop.serving.metrics`.

The model loads in a background thread started by ``__init__``, so the server answers
``/livez`` and ``/readyz`` (503) while a large model is still loading, and ``/predict`` says
503 until then instead of the connection being refused.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import ServiceUnavailable
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubeloop.components.core.decision import DEFAULT_THRESHOLD, predict_classes
from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.schema import category_text
from kubeloop.components.core.spec import ResolvedTask
from kubeloop.components.register import registry
from kubeloop.serving.metrics import Outcome, variant_metrics
from kubeloop.serving.schemas import Label, Prediction, RowValidator, VariantMetadata
from kubeloop.serving.selfcall import call_self

logger = logging.getLogger(__name__)

MODEL_TAG_ENV = "KUBELOOP_MODEL_TAG"

Loader = Callable[[str], registry.RegisteredModel]


class VariantArgs(BaseModel):
    """``bentoml serve ... --arg key=value`` (values arrive as text; pydantic converts)."""

    # Extra keys are ignored, not refused: bento arguments are global to one `bentoml serve`,
    # and a gateway served in the same process will read its own keys from them.
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(
        default=None,
        description=f"Registered model tag or stage alias; default ${MODEL_TAG_ENV}.",
    )
    max_batch_size: int = Field(default=64, ge=1, description="Rows per model call, at most.")
    adaptive_batching: bool = Field(
        default=True,
        description="Merge concurrent requests into one model call; false: one call each.",
    )
    max_latency_ms: int = Field(
        default=1000,
        ge=1,
        description="Adaptive batching gives up on (503) a queued call older than this.",
    )
    max_rows: int = Field(default=1000, ge=1, description="Rows per /predict request, at most.")
    # Fault injection for rollout drills and tests (cf. Istio fault injection); off by default.
    fault_error_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of /predict calls that fail (500)."
    )
    fault_delay_ms: int = Field(default=0, ge=0, description="Sleep before each /predict answer.")
    fault_constant: bool = Field(
        default=False, description="Every row gets the first class (or the value 0.0)."
    )


ARGS = bentoml.use_arguments(VariantArgs)


class InjectedFault(RuntimeError):
    """A failure asked for by ``--arg fault_error_rate`` (answered as a 500)."""


@dataclass(frozen=True)
class Faults:
    """Injected faults of a variant: errors, delay, constant answers."""

    error_rate: float = 0.0
    delay_ms: int = 0
    constant: bool = False

    @classmethod
    def from_args(cls, args: VariantArgs) -> Faults:
        return cls(args.fault_error_rate, args.fault_delay_ms, args.fault_constant)

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.delay_ms > 0 or self.constant


def _numeric(v: Any) -> float | None:
    """A finite float, else None (missing): no bools, no text, no overflowing ints."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _category(v: Any) -> str | None:
    """:func:`category_text` for text, numbers and booleans, else None (missing)."""
    if not isinstance(v, str | int | float | bool):
        return None
    try:
        return category_text(v)
    except ValueError:  # an int too long for str() (sys.get_int_max_str_digits)
        return None


class LoadedModel:
    """Everything derived from the registered model once, at load time."""

    def __init__(self, model: registry.RegisteredModel, max_rows: int) -> None:
        from kubeloop.components.clean.task import CleanParams

        info = model.info
        self.model = model
        self.tag = info.tag
        self.task = cast(ResolvedTask, model.task)
        self.features = model.features
        self.classes: list[Label] = list(model.classes)
        self.class_keys = [str(c) for c in self.classes]
        self.threshold = model.threshold if model.threshold is not None else DEFAULT_THRESHOLD
        self.max_rows = max_rows
        params = CleanParams.model_validate_json(Path(info.file("clean_params.json")).read_text())
        unknown = [f for f in self.features if f not in params.kinds]
        if unknown:
            raise KubeloopError(
                f"model {self.tag}: feature(s) {unknown} have no kind in clean_params.json"
            )
        self.kinds: dict[str, Literal["numeric", "categorical"]] = {
            f: params.kinds[f] for f in self.features
        }
        self.validator = RowValidator(info.name, self.kinds, max_rows)
        self.request = self.validator.request
        self.metadata = VariantMetadata(
            tag=info.tag,
            name=info.name,
            version=info.version,
            stage=info.stage,
            task=self.task,
            classes=self.classes,
            features=self.features,
            feature_kinds=self.kinds,
            feature_service=info.metadata.get("feature_service"),
            label=info.metadata.get("label"),
            threshold=self.threshold if self.task == "binary" else None,
            primary_metric=info.primary_metric,
            metrics=info.metrics,
        )

    def validate(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Raw rows -> typed rows (floats / text / None), or a pydantic ValidationError that
        names each bad row and field."""
        return self.validator.validate(rows)

    def _sanitize(self, row: Any) -> dict[str, Any]:
        """One row as `score` trusts it: a value that cannot be a feature becomes None.

        `/score` is reachable over HTTP without `validate`, and one exception there fails
        every request batched with it (e.g. a 400-digit int overflows clean's to_numeric)."""
        if not isinstance(row, dict):
            return {}
        out: dict[str, Any] = {}
        for col, kind in self.kinds.items():
            out[col] = (_numeric if kind == "numeric" else _category)(row.get(col))
        return out

    def score(self, rows: list[dict[str, Any]]) -> tuple[list[Prediction], np.ndarray]:
        """Predictions for validated rows, and the raw output (probabilities or values)."""
        # Missing keys -> NaN and extra keys dropped here; unusable values -> None (imputed).
        df = pd.DataFrame.from_records([self._sanitize(r) for r in rows], columns=self.features)
        out = self.model.predict(df)
        tag = self.tag
        if self.task == "regression":
            values = np.asarray(out, dtype=float).reshape(-1)
            return [Prediction(prediction=float(v), model=tag) for v in values], values
        proba = np.asarray(out, dtype=float)
        threshold = self.threshold if self.task == "binary" else None
        picked = predict_classes(proba, self.task, threshold)
        keys, classes = self.class_keys, self.classes
        preds = [
            Prediction(
                prediction=classes[k],
                probabilities=dict(zip(keys, p.tolist(), strict=True)),
                model=tag,
                threshold=threshold,
            )
            for k, p in zip(picked.tolist(), proba, strict=True)
        ]
        return preds, picked

    def constant(self, n: int) -> tuple[list[Prediction], np.ndarray]:
        """What a broken model answers (fault injection): the first class, or 0.0."""
        if self.task == "regression":
            return [Prediction(prediction=0.0, model=self.tag) for _ in range(n)], np.zeros(n)
        proba = {k: float(i == 0) for i, k in enumerate(self.class_keys)}
        threshold = self.threshold if self.task == "binary" else None
        first = Prediction(
            prediction=self.classes[0], probabilities=proba, model=self.tag, threshold=threshold
        )
        return [first.model_copy() for _ in range(n)], np.zeros(n, dtype=np.int64)


@bentoml.service
class ModelVariant:
    """One registered model, validated typed predictions, adaptive batching, metrics."""

    def __init__(
        self,
        tag: str | None = None,
        *,
        loader: Loader = registry.load,
        faults: Faults | None = None,
    ) -> None:
        """`tag` wins over ``--arg model=`` and ``$KUBELOOP_MODEL_TAG`` (BentoML itself always
        calls ``ModelVariant()``; tests pass a tag, a fake loader, faults)."""
        requested = tag or ARGS.model or os.environ.get(MODEL_TAG_ENV)
        if not requested:
            raise KubeloopError(
                "no model to serve: pass `--arg model=NAME:VERSION` (or NAME:production, "
                f"NAME:latest) to `bentoml serve`, or set ${MODEL_TAG_ENV}"
            )
        self.requested_tag: str = requested
        self.faults = faults if faults is not None else Faults.from_args(ARGS)
        if self.faults.active:
            logger.warning(
                "FAULT INJECTION ON for %r: error_rate=%s delay_ms=%s constant=%s",
                requested,
                self.faults.error_rate,
                self.faults.delay_ms,
                self.faults.constant,
            )
        self._rng = random.Random()
        self.metrics = variant_metrics()
        self.loaded: LoadedModel | None = None
        self.load_error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._load, args=(loader,), name="kubeloop-model-load", daemon=True
        )
        self._thread.start()

    def _load(self, loader: Loader) -> None:
        started = time.perf_counter()
        try:
            self.loaded = LoadedModel(loader(self.requested_tag), ARGS.max_rows)
        except BaseException as err:  # surfaced by __is_alive__ / wait_loaded, and logged
            # BaseException too (a native loader may raise one): otherwise neither `loaded`
            # nor `load_error` is set and the pod is never ready yet always "alive".
            self.load_error = f"{type(err).__name__}: {err}"
            logger.exception("loading model %r failed", self.requested_tag)
            if not isinstance(err, Exception):
                raise
        else:
            logger.info(
                "model %s (requested %r) loaded in %.2fs",
                self.loaded.tag,
                self.requested_tag,
                time.perf_counter() - started,
            )
        finally:
            self._done.set()

    def wait_loaded(self, timeout: float | None = None) -> LoadedModel:
        """Block until loading finished; the loaded model, else KubeloopError."""
        if not self._done.wait(timeout):
            raise KubeloopError(f"model {self.requested_tag!r} still loading after {timeout}s")
        if self.loaded is None:
            raise KubeloopError(f"model {self.requested_tag!r} failed to load: {self.load_error}")
        return self.loaded

    def __is_ready__(self) -> bool:
        return self.loaded is not None

    def __is_alive__(self) -> bool:
        return self.load_error is None

    def _model(self) -> LoadedModel:
        loaded = self.loaded
        if loaded is None:
            why = self.load_error or "still loading"
            raise ServiceUnavailable(f"model {self.requested_tag!r} is not ready ({why})")
        return loaded

    async def _inject_faults(self) -> None:
        faults = self.faults
        if faults.delay_ms:
            await asyncio.sleep(faults.delay_ms / 1000)
        if faults.error_rate and self._rng.random() < faults.error_rate:
            raise InjectedFault(f"injected fault (fault_error_rate={faults.error_rate})")

    # ------------------------------------------------------------------------ APIs

    @bentoml.api
    async def predict(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        """Score RAW feature rows (the model's feature names; null = missing, imputed)."""
        started = time.perf_counter()
        outcome: Outcome = "error"
        # The requested tag (maybe an alias) only labels "unavailable": no model to name.
        model_label = self.requested_tag
        try:
            loaded = self._model()
            model_label = loaded.tag  # after _model(): loading may finish mid-request
            valid = loaded.validate(rows)
            await self._inject_faults()
            # Through BentoML's self-proxy (`to_async`), so concurrent requests meet in the
            # adaptive batching dispatcher of `score`. An instance built without BentoML
            # (`ModelVariant.inner(...)`) has no proxy.
            proxy = getattr(self, "to_async", None)
            predictions: list[Prediction]
            if proxy is not None and ARGS.adaptive_batching:
                predictions = await call_self(lambda: proxy.score(valid))
            else:
                # Batching off (BentoML refuses max_batch_size=1 on a batchable method), or
                # no server: each request is its own model call, off the event loop.
                predictions = await asyncio.to_thread(self.score_rows, valid)
            outcome = "ok"
            return predictions
        except ServiceUnavailable:
            outcome = "unavailable"
            raise
        except ValidationError:
            outcome = "invalid"
            raise
        finally:
            self.metrics.observe_request(model_label, outcome, time.perf_counter() - started)

    @bentoml.api(
        batchable=True,
        max_batch_size=ARGS.max_batch_size,
        max_latency_ms=ARGS.max_latency_ms,
    )
    def score(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        """Batch of already validated rows -> one prediction per row (see module doc)."""
        return self.score_rows(rows)

    def score_rows(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        """What `score` does, as a plain method (under a server `self.score` is the proxy)."""
        loaded = self._model()
        if not rows:
            return []
        predictions, picked = loaded.score(rows)
        if self.faults.constant:
            predictions, picked = loaded.constant(len(rows))
        m = self.metrics
        m.observe_batch(loaded.tag, len(rows))
        if loaded.task == "regression":
            m.observe_values(loaded.tag, picked.tolist())
        else:
            counts = collections.Counter(picked.tolist())
            m.observe_classes(loaded.tag, ((loaded.class_keys[k], n) for k, n in counts.items()))
        return predictions

    @bentoml.api
    def metadata(self) -> VariantMetadata:
        """Tag, task, classes, features (+ kinds), feature service and metrics of the model."""
        return self._model().metadata
