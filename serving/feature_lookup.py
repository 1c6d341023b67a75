"""Online feature lookup for the gateway: entity ids -> a model's raw feature rows.

The Feast store is opened and the feature service fetched once, at construction, so a
request pays only for the online read. `features.task.online_features` is not reused here:
it fetches the service per call, and Feast's `get_feature_service` re-reads the registry
each time (a one-id lookup took p50 8.9 ms that way, 0.33 ms with the service kept; see
tests/benchmarks/bench_feature_lookup.py), and it builds a DataFrame a request does not
need. Values come back as plain Python values of the service's declared Feast types,
None where missing. The API is synchronous (Feast's SQLite online store is); the gateway
runs it in a thread.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import Spec

if TYPE_CHECKING:
    from feast import FeatureStore


class UnknownEntities(KubeloopError):
    """The online store has no features for these entity ids."""

    def __init__(self, ids: Sequence[Any]) -> None:
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:10])
        more = f" and {len(self.ids) - 10} more" if len(self.ids) > 10 else ""
        super().__init__(
            f"{len(self.ids)} entity id(s) unknown to the online feature store: {shown}{more} "
            "(materialize their features, or send the feature values instead)"
        )


class FeatureLookup:
    """Raw feature rows of one model (its `features`, in order) from the online store.

    `feature_service` is the model's (VariantMetadata.feature_service); None falls back to
    `spec.feature_service`. Pass `store` to reuse an open FeatureStore.
    """

    def __init__(
        self,
        spec: Spec,
        features: list[str],
        *,
        store: FeatureStore | None = None,
        feature_service: str | None = None,
    ) -> None:
        from feast.errors import FeatureServiceNotFoundException

        from kubeloop.components.features.store import open_store

        if not features:
            raise KubeloopError("feature lookup: the model lists no features")
        self.features = list(features)
        self.feature_service = feature_service or spec.feature_service
        self.entity_column = spec.data.entity_column
        self.store = store if store is not None else open_store(spec)
        try:
            service = self.store.get_feature_service(self.feature_service)
        except FeatureServiceNotFoundException:
            raise KubeloopError(
                f"feature lookup: feature service {self.feature_service!r} is not registered "
                "in the feature store (run the training pipeline with features.enabled, or "
                "send feature values instead of entity ids)"
            ) from None
        declared = {
            f.name: str(f.dtype) for p in service.feature_view_projections for f in p.features
        }
        missing = [f for f in self.features if f not in declared]
        if missing:
            raise KubeloopError(
                f"feature lookup: feature service {self.feature_service!r} lacks the model's "
                f"feature(s) {missing} (it has {sorted(declared)})"
            )
        self._service = service
        self._convert = {f: _converter(declared[f]) for f in self.features}
        self._key = _key_converter(self.store, self.entity_column)

    def rows(self, entity_ids: Sequence[Any]) -> list[dict[str, Any]]:
        """One raw row per id, in order (repeats allowed). Raises UnknownEntities naming
        every id the online store knows none of the model's features for."""
        if not entity_ids:
            return []
        keys = [self._key(i) for i in entity_ids]
        known = [k for k in keys if k is not None]
        columns: dict[str, list[Any]] = {f: [] for f in self.features}
        if known:
            # to_dict(): plain Python values in request order, None where missing.
            got = self.store.get_online_features(
                features=self._service,
                entity_rows=[{self.entity_column: k} for k in known],
            ).to_dict()
            columns = {f: got[f] for f in self.features}
        out: list[dict[str, Any]] = []
        unknown: list[Any] = []
        it = iter(range(len(known)))
        for raw, key in zip(entity_ids, keys, strict=True):
            if key is None:
                unknown.append(raw)
                continue
            j = next(it)
            row = {f: self._convert[f](columns[f][j]) for f in self.features}
            if all(v is None for v in row.values()):
                unknown.append(raw)
            out.append(row)
        if unknown:
            raise UnknownEntities(unknown)
        return out


def _missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(v != v)  # NaN, NaT, pd.NA (whose != is NA: bool() raises)
    except TypeError:
        return True


def _converter(feast_type: str) -> Callable[[Any], Any]:
    """Online-store value -> plain Python value of the declared Feast type, None if missing."""

    def to_int(v: Any) -> Any:
        if _missing(v):
            return None
        f = float(v)
        return int(f) if f.is_integer() else f

    def to_float(v: Any) -> Any:
        if _missing(v):
            return None
        f = float(v)
        return f if math.isfinite(f) else None

    def to_bool(v: Any) -> Any:
        return None if _missing(v) else bool(v)

    def to_text(v: Any) -> Any:
        if _missing(v):
            return None
        return v.item() if hasattr(v, "item") else v

    if "Int" in feast_type:
        return to_int
    if "Float" in feast_type:
        return to_float
    if "Bool" in feast_type:
        return to_bool
    return to_text


def _key_converter(store: FeatureStore, entity: str) -> Callable[[Any], Any]:
    """Request id -> the entity key Feast expects, None when it cannot be one (an unknown
    id then, not an error: "42" for an Int64 key, 4.5 or true for any key)."""
    from feast import ValueType

    try:
        value_type = store.get_entity(entity).value_type
    except Exception:  # no entity registered: let the feature service check speak
        value_type = ValueType.STRING

    def to_int(v: Any) -> int | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, str) and re.fullmatch(r"[+-]?[0-9]+", v.strip()):
            return int(v)
        if hasattr(v, "item") and isinstance(v.item(), int):
            return int(v.item())
        return None

    def to_text(v: Any) -> str | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, str):
            return v
        if isinstance(v, int) or (hasattr(v, "item") and isinstance(v.item(), int | str)):
            return str(v.item() if hasattr(v, "item") else v)
        return None

    return to_int if value_type in (ValueType.INT64, ValueType.INT32) else to_text
