"""Where a gateway slot's rows are scored: a model loaded in the gateway, or a variant service.

Both implement :class:`VariantBackend`, so routing, validation, metrics and the prediction
log are one code path for the embedded mode (one ``bentoml serve`` process) and the cluster
mode (``serve.stable_url`` / ``serve.canary_url`` point at ``ModelVariant`` services).

The remote backend talks to its service through ``bentoml.AsyncHTTPClient`` rather than
``bentoml.depends(url=...)``: a dependency is a class attribute fixed when the module is
imported, while the gateway learns its URLs from the spec file named at start-up (and tests
build gateways for several URLs in one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.register import registry
from kubeloop.serving.schemas import Prediction, RowValidator, VariantMetadata

if TYPE_CHECKING:
    from kubeloop.serving.variant import LoadedModel

logger = logging.getLogger(__name__)

Loader = Callable[[str], registry.RegisteredModel]
Batcher = Callable[[list[dict[str, Any]]], Awaitable[list[Prediction]]]


class VariantFailed(KubeloopError):
    """A variant could not answer (a 502 for the caller, outcome "error" in the metrics)."""


class VariantBackend(Protocol):
    """One model behind a gateway slot."""

    requested: str  # the tag or stage alias asked for (or the service URL)

    @property
    def metadata(self) -> VariantMetadata | None:
        """The served model's metadata; None until it is ready."""

    @property
    def validator(self) -> RowValidator | None:
        """Row validation for this model; None until it is ready."""

    @property
    def error(self) -> str | None:
        """Why it is not ready (None while loading or once ready)."""

    def wait(self, timeout: float) -> VariantMetadata:
        """Block until ready; its metadata, else KubeloopError saying why."""

    async def score(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        """Predictions for validated rows, in order; VariantFailed if it cannot answer."""

    async def aclose(self) -> None:
        """Release connections."""


def matches(meta: VariantMetadata, requested: str) -> bool:
    """Whether a served model is the one asked for: its tag, or its name with its stage."""
    return requested in (meta.tag, f"{meta.name}:{meta.stage}")


class _Readiness:
    """Load once in a background thread: ready, failed, or still loading."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.error: str | None = None
        self.done = threading.Event()

    def start(self, target: Callable[[], None]) -> None:
        threading.Thread(
            target=self._run, args=(target,), name=f"load {self.what}", daemon=True
        ).start()

    def _run(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as err:  # surfaced by `error` / `wait`, and logged
            self.error = f"{type(err).__name__}: {err}"
            logger.exception("%s: not ready", self.what)
        finally:
            self.done.set()

    def wait(self, timeout: float) -> None:
        if not self.done.wait(timeout):
            raise KubeloopError(f"{self.what}: still not ready after {timeout:g} s")
        if self.error:
            raise KubeloopError(f"{self.what}: {self.error}")


class LocalBackend:
    """A registered model loaded into the gateway process; rows go through `batch` (the
    gateway's batchable method of the slot, so concurrent requests share model calls)."""

    def __init__(self, tag: str, max_rows: int, *, loader: Loader = registry.load) -> None:
        self.requested = tag
        self.loaded: LoadedModel | None = None
        self.batch: Batcher = self._direct
        self._state = _Readiness(f"model {tag!r}")
        self._state.start(lambda: self._load(loader, max_rows))

    def _load(self, loader: Loader, max_rows: int) -> None:
        from kubeloop.serving.variant import LoadedModel

        started = time.perf_counter()
        self.loaded = LoadedModel(loader(self.requested), max_rows)
        logger.info(
            "gateway: model %s (requested %r) loaded in %.2fs",
            self.loaded.tag,
            self.requested,
            time.perf_counter() - started,
        )

    @property
    def metadata(self) -> VariantMetadata | None:
        return self.loaded.metadata if self.loaded else None

    @property
    def validator(self) -> RowValidator | None:
        return self.loaded.validator if self.loaded else None

    @property
    def error(self) -> str | None:
        return self._state.error

    def wait(self, timeout: float) -> VariantMetadata:
        self._state.wait(timeout)
        assert self.loaded is not None
        return self.loaded.metadata

    async def _direct(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        assert self.loaded is not None
        return self.loaded.score(rows)[0]

    async def score(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        try:
            return await self.batch(rows)
        except Exception as err:
            raise VariantFailed(f"model {self.requested!r} failed: {err}") from err

    async def aclose(self) -> None:
        return None


class RemoteBackend:
    """A ``ModelVariant`` service by URL: its /metadata says what it serves, /predict scores."""

    def __init__(
        self,
        url: str,
        max_rows: int,
        *,
        expect: str | None = None,
        timeout: float = 30.0,
        deadline_s: float = 600.0,
    ) -> None:
        """`expect`: the tag (or ``name:stage``) the service must serve; `deadline_s`: how
        long to wait for its /metadata before giving up (not ready, not alive)."""
        self.requested = expect or url
        self.url = url
        self.expect = expect
        self.timeout = timeout
        self.max_rows = max_rows
        self._meta: VariantMetadata | None = None
        self._validator: RowValidator | None = None
        self._clients: dict[int, Any] = {}  # one async client per event loop
        self._state = _Readiness(f"variant service {url}")
        self._state.start(lambda: self._poll_metadata(deadline_s))

    def _poll_metadata(self, deadline_s: float) -> None:
        """Until the service answers /metadata (it is 503 while its model loads)."""
        import httpx

        give_up = time.monotonic() + deadline_s
        while True:
            try:
                resp = httpx.post(f"{self.url}/metadata", json={}, timeout=self.timeout)
                if resp.status_code == 200:
                    break
                why = f"HTTP {resp.status_code}"
            except httpx.HTTPError as err:
                why = str(err) or type(err).__name__
            if time.monotonic() > give_up:
                raise KubeloopError(f"/metadata did not answer in {deadline_s:g} s ({why})")
            time.sleep(0.2)
        meta = VariantMetadata.model_validate(resp.json())
        if self.expect and not matches(meta, self.expect):
            raise KubeloopError(f"serves {meta.tag} (stage {meta.stage}), not {self.expect}")
        self._validator = RowValidator.for_metadata(meta, self.max_rows)
        self._meta = meta

    @property
    def metadata(self) -> VariantMetadata | None:
        return self._meta

    @property
    def validator(self) -> RowValidator | None:
        return self._validator

    @property
    def error(self) -> str | None:
        return self._state.error

    def wait(self, timeout: float) -> VariantMetadata:
        self._state.wait(timeout)
        assert self._meta is not None
        return self._meta

    async def _client(self) -> Any:
        # httpx async connection pools belong to one event loop: one client per loop.
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None:
            import bentoml

            client = bentoml.AsyncHTTPClient(self.url, server_ready_timeout=0, timeout=self.timeout)
            await client.__aenter__()  # reads the service's /schema.json (its endpoints)
            self._clients[loop] = client
        return client

    async def score(self, rows: list[dict[str, Any]]) -> list[Prediction]:
        try:
            client = await self._client()
            out = await client.predict(rows=rows)
            return [Prediction.model_validate(p) for p in out]
        except Exception as err:  # HTTP errors, 5xx of the variant, unparseable answers
            raise VariantFailed(f"variant service {self.url} failed: {err}") from err

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(RuntimeError):  # its loop is gone already
                await client.close()
