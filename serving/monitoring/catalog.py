"""Every metric the package defines, with its type, read from the real metric objects.

Rules, dashboards and canary queries may only select what is listed here (a test checks
rules.yaml against it). The names come from the modules that define them once; the types
(and so the exposed sample names: ``_total``, ``_bucket``/``_sum``/``_count``) from
prometheus_client's own description of each metric.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from typing import Any

# (module, factory) pairs whose factory builds that module's metric objects. A factory that
# takes a `registry` argument gets a private one; the others register in the default one.
FACTORIES: tuple[tuple[str, str], ...] = (
    ("kubeloop.serving.metrics", "variant_metrics"),
    ("kubeloop.serving.metrics", "gateway_metrics"),
    ("kubeloop.serving.drift.metrics", "drift_metrics"),
    ("kubeloop.serving.trigger.metrics", "trigger_metrics"),
)
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def _families(registries: Iterable[Any]) -> dict[str, str]:
    return {family.name: family.type for r in registries for family in r.collect()}


def metric_families(missing_ok: bool = True) -> dict[str, str]:
    """Family name -> type (``counter`` families are named without ``_total``)."""
    from prometheus_client import REGISTRY, CollectorRegistry

    from kubeloop.serving.monitoring.metrics import ModelAgeCollector

    private = CollectorRegistry()
    for module_name, factory_name in FACTORIES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            if missing_ok:
                continue
            raise
        factory = getattr(module, factory_name)
        if "registry" in inspect.signature(factory).parameters:
            factory(registry=private)
        else:  # a process-wide factory (default registry, created once)
            factory()
    private.register(ModelAgeCollector("any", list_models=lambda _: []))
    families = _families([private, REGISTRY])
    return {n: t for n, t in families.items() if n.startswith("kubeloop_")}


def exposed_names(families: dict[str, str]) -> set[str]:
    """The sample names Prometheus stores for these families."""
    return {name + suffix for name, kind in families.items() for suffix in _SUFFIXES[kind]}
