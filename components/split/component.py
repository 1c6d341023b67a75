"""KFP component: train/validation/test split with a leakage check."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def split(
    spec_json: str,
    run_id: str,
    data: dsl.Input[dsl.Dataset],
    train: dsl.Output[dsl.Dataset],
    val: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
) -> str:
    """Split by time, entity, label strata or at random; returns the strategy used."""
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.split.task import run
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "split") as rec:
        result = run(spec, data.path, train.path, val.path, test.path)
        rec(split=result.model_dump(mode="json"))
    return result.strategy
