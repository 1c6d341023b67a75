"""KFP component: Great Expectations checks; a blocking failure stops the pipeline."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def validate(
    spec_json: str,
    run_id: str,
    data: dsl.Input[dsl.Dataset],
    report: dsl.Output[dsl.HTML],
    summary: dsl.Output[dsl.Markdown],
) -> bool:
    """Check the data against the spec's suite (or one suggested from the reference)."""
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.tracking.steps import record_step
    from kubeloop.components.validate.task import run

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "validate") as rec:
        rec(artifacts={"validation_report": report.path})
        result = run(spec, data.path, report.path, summary.path)
        rec(validation=result.model_dump(mode="json"))
    return result.success
