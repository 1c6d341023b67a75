"""KFP component: Feast point-in-time training sets and online materialization."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def features(
    spec_json: str,
    run_id: str,
    train_in: dsl.Input[dsl.Dataset],
    val_in: dsl.Input[dsl.Dataset],
    test_in: dsl.Input[dsl.Dataset],
    train: dsl.Output[dsl.Dataset],
    val: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
) -> str:
    """Register the feature views, join each split point-in-time, fill the online store."""
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.features.task import run
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "features") as rec:
        result = run(
            spec, train_in.path, val_in.path, test_in.path, train.path, val.path, test.path
        )
        rec(features=result.model_dump(mode="json"))
    return result.feature_service
