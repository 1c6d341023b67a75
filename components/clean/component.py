"""KFP component: impute and cap with parameters fitted on the training split only."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def clean(
    spec_json: str,
    run_id: str,
    train_in: dsl.Input[dsl.Dataset],
    val_in: dsl.Input[dsl.Dataset],
    test_in: dsl.Input[dsl.Dataset],
    train: dsl.Output[dsl.Dataset],
    val: dsl.Output[dsl.Dataset],
    test: dsl.Output[dsl.Dataset],
    params: dsl.Output[dsl.Artifact],
    audit: dsl.Output[dsl.Artifact],
) -> None:
    """Fit cleaning parameters on train, apply them to every split, audit each change."""
    from kubeloop.components.clean.task import run
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "clean") as rec:
        result = run(
            spec,
            train_in.path,
            val_in.path,
            test_in.path,
            train.path,
            val.path,
            test.path,
            params.path,
            audit.path,
        )
        rec(clean=result.model_dump(mode="json"))
