"""Submit the compiled pipeline to a Kubeflow Pipelines endpoint."""

from __future__ import annotations

from typing import Any, Protocol

from kubeloop.components.core.spec import Spec
from kubeloop.pipelines.training import build_training_pipeline


class PipelineClient(Protocol):
    def create_run_from_pipeline_func(self, pipeline_func: Any, **kwargs: Any) -> Any: ...


def submit(spec: Spec, host: str, run_id: str, client: PipelineClient | None = None) -> str:
    """Create a run on the KFP host; returns the KFP run id."""
    if client is None:
        import kfp

        client = kfp.Client(host=host)
    result = client.create_run_from_pipeline_func(
        build_training_pipeline(spec),
        arguments={"spec_json": spec.model_dump_json(), "run_id": run_id},
        run_name=run_id,
        experiment_name=spec.name,
        enable_caching=False,
    )
    return str(getattr(result, "run_id", result))
