"""KFP component: load the raw table, normalize formats and types, drop duplicates."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from typing import NamedTuple

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def ingest(
    spec_json: str,
    run_id: str,
    data: dsl.Output[dsl.Dataset],
    audit: dsl.Output[dsl.Artifact],
) -> NamedTuple("IngestOutputs", [("fingerprint", str), ("task", str)]):  # type: ignore[valid-type]
    """Read `data.source`, normalize it and write Parquet plus an audit of every change."""
    from collections import namedtuple

    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.ingest.task import run
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "ingest") as rec:
        result = run(spec, data.path, audit.path)
        rec(data_fingerprint=result.fingerprint, ingest=result.model_dump(mode="json"))
    data.metadata.update({"rows": result.rows_out, "fingerprint": result.fingerprint})
    IngestOutputs = namedtuple("IngestOutputs", ["fingerprint", "task"])
    return IngestOutputs(result.fingerprint, result.task)
