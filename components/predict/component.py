"""KFP component: batch-score a file with a registered model (chunked, flat memory)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def batch_score(
    spec_json: str,
    run_id: str,
    model: str,
    input_path: str,
    output_path: str,
    chunk_rows: int,
) -> str:
    """Score every row of `input_path` into `output_path` (CSV or Parquet, by suffix) with
    `model`: a tag (name:version, name:latest) or a stage of the spec's model (production,
    candidate, ...). The output appears only once every row is scored. Returns the run's
    ScoreResult as JSON."""
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.predict.task import score_file
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "score") as rec:
        result = score_file(
            model,
            input_path,
            output_path,
            chunk_rows=chunk_rows,
            name=spec.name,
            on_chunk=lambda done: print(f"chunk {done.index}: {done.rows_done} rows scored"),
        )
        rec(model_tag=result.model_tag, rows=result.rows, seconds=result.seconds)
    return result.model_dump_json()
