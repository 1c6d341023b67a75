"""The training pipeline: only wiring of components, plus Kubernetes settings.

validate → split → clean → features → tune (ParallelFor trials) → train → evaluate →
register (which stores nothing unless the gate passed). The number of trials and the GPU
request are compile-time settings, so the pipeline is built from a spec.
"""

# No `from __future__ import annotations`: KFP reads the pipeline signature's real types.

from collections.abc import Callable
from typing import Any

from kfp import dsl, kubernetes

from kubeloop.components.clean.component import clean
from kubeloop.components.core.spec import AcceleratorSpec, Spec
from kubeloop.components.evaluate.component import evaluate
from kubeloop.components.features.component import features
from kubeloop.components.ingest.component import ingest
from kubeloop.components.register.component import register
from kubeloop.components.split.component import split
from kubeloop.components.train.component import train
from kubeloop.components.tune.component import create_study, select_best, tune_trial
from kubeloop.components.validate.component import validate

PIPELINE_NAME = "kubeloop-training"


def apply_accelerator(task: dsl.PipelineTask, acc: AcceleratorSpec) -> None:
    """GPU request, node selector and tolerations for a training task (kfp-kubernetes)."""
    if acc.count > 0:
        task.set_accelerator_type(acc.type).set_accelerator_limit(acc.count)
    for key, value in sorted(acc.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in acc.tolerations:
        kubernetes.add_toleration(
            task,
            key=tol.get("key"),
            operator=tol.get("operator", "Equal"),
            value=tol.get("value"),
            effect=tol.get("effect"),
        )


def _no_cache(task: dsl.PipelineTask) -> dsl.PipelineTask:
    # Every task reads state outside its inputs (the data file, the model store, the
    # shared study), so a cached result could be stale.
    return task.set_caching_options(False)


def build_training_pipeline(spec: Spec) -> Callable[..., Any]:
    """A `@dsl.pipeline` function for this spec; its defaults make it runnable as is."""
    spec_json_default = spec.model_dump_json()
    acc = spec.train.accelerator

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description=f"kubeloop training loop for project {spec.name}",
    )
    def training_pipeline(spec_json: str = spec_json_default, run_id: str = "") -> None:
        # run_id: set by `kubeloop pipeline run` (local tracking, study name); left empty
        # for runs started elsewhere, whose study is then named after the KFP job id.
        job_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        ing = _no_cache(ingest(spec_json=spec_json, run_id=run_id))
        val = _no_cache(validate(spec_json=spec_json, run_id=run_id, data=ing.outputs["data"]))
        spl = _no_cache(split(spec_json=spec_json, run_id=run_id, data=ing.outputs["data"]))
        spl.after(val)
        cln = _no_cache(
            clean(
                spec_json=spec_json,
                run_id=run_id,
                train_in=spl.outputs["train"],
                val_in=spl.outputs["val"],
                test_in=spl.outputs["test"],
            )
        )
        feat = _no_cache(
            features(
                spec_json=spec_json,
                run_id=run_id,
                train_in=cln.outputs["train"],
                val_in=cln.outputs["val"],
                test_in=cln.outputs["test"],
            )
        )
        train_set, val_set, test_set = (
            feat.outputs["train"],
            feat.outputs["val"],
            feat.outputs["test"],
        )
        if spec.tune.enabled:
            study = _no_cache(create_study(spec_json=spec_json, run_id=run_id, job_id=job_id))
            with dsl.ParallelFor(
                items=list(range(spec.tune.trials)), parallelism=spec.tune.parallelism
            ) as index:
                trial = _no_cache(
                    tune_trial(
                        spec_json=spec_json,
                        run_id=run_id,
                        job_id=job_id,
                        trial_index=index,
                        train=train_set,
                        val=val_set,
                    )
                ).after(study)
                apply_accelerator(trial, acc)
            best = _no_cache(
                select_best(
                    spec_json=spec_json,
                    run_id=run_id,
                    job_id=job_id,
                    trials=dsl.Collected(trial.output),
                )
            )
            params_json: Any = best.output
        else:
            params_json = "{}"
        trn = _no_cache(
            train(
                spec_json=spec_json,
                run_id=run_id,
                params_json=params_json,
                train=train_set,
                val=val_set,
            )
        )
        apply_accelerator(trn, acc)
        ev = _no_cache(
            evaluate(
                spec_json=spec_json,
                run_id=run_id,
                model=trn.outputs["model"],
                val=val_set,
                test=test_set,
                raw_val=spl.outputs["val"],
                raw_test=spl.outputs["test"],
            )
        )
        # The register task enforces the gate itself (it stores nothing when the gate
        # failed) rather than sitting under dsl.If: kfp.local cannot resolve a condition
        # on an upstream task's output, and the guard belongs next to the store anyway.
        _no_cache(
            register(
                spec_json=spec_json,
                run_id=run_id,
                data_fingerprint=ing.outputs["fingerprint"],
                model=trn.outputs["model"],
                clean_params=cln.outputs["params"],
                evaluation=ev.outputs["evaluation"],
                train=train_set,
                report=ev.outputs["report"],
                ingest_audit=ing.outputs["audit"],
                clean_audit=cln.outputs["audit"],
            )
        )

    return training_pipeline
