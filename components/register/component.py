"""KFP component: atomic registration in the BentoML model store, labelled `candidate`."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def register(
    spec_json: str,
    run_id: str,
    data_fingerprint: str,
    model: dsl.Input[dsl.Model],
    clean_params: dsl.Input[dsl.Artifact],
    evaluation: dsl.Input[dsl.Artifact],
    train: dsl.Input[dsl.Dataset],
    report: dsl.Input[dsl.HTML],
    ingest_audit: dsl.Input[dsl.Artifact],
    clean_audit: dsl.Input[dsl.Artifact],
) -> str:
    """Store the model with its preprocessing, metrics, lineage and model card."""
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.register.task import load_audit, run
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "register") as rec:
        tag = run(
            spec,
            model.path,
            clean_params.path,
            evaluation.path,
            train.path,
            data_fingerprint,
            run_id,
            report.path,
            audit=load_audit(ingest_audit.path, clean_audit.path),
        )
        rec(model_tag=tag)
    return tag or ""
