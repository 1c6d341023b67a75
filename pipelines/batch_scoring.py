"""The batch-scoring pipeline: one component over `score_file`, for scheduled jobs.

A registered model (a tag, or a stage of the spec's model: `production` by default) scores
a CSV or Parquet file into another, chunk by chunk. On Kubeflow Pipelines the paths are
read inside the task's pod (a mounted volume); a recurring run replaces the output file
atomically each time.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.

from collections.abc import Callable
from typing import Any

from kfp import dsl

from kubeloop.components.core.spec import Spec
from kubeloop.components.predict.component import batch_score

PIPELINE_NAME = "kubeloop-batch-scoring"
DEFAULT_MODEL = "production"
DEFAULT_CHUNK_ROWS = 50_000


def build_batch_scoring_pipeline(spec: Spec) -> Callable[..., Any]:
    """A `@dsl.pipeline` function for this spec; input and output paths are run arguments."""
    spec_json_default = spec.model_dump_json()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=f"kubeloop batch scoring for project {spec.name}",
    )
    def batch_scoring_pipeline(
        input_path: str,
        output_path: str,
        model: str = DEFAULT_MODEL,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        spec_json: str = spec_json_default,
        run_id: str = "",
    ) -> str:
        task = batch_score(
            spec_json=spec_json,
            run_id=run_id,
            model=model,
            input_path=input_path,
            output_path=output_path,
            chunk_rows=chunk_rows,
        )
        # The result depends on the model store and the input file, not only on the
        # arguments: a cached answer would be stale.
        task.set_caching_options(False)
        return task.output

    return batch_scoring_pipeline
