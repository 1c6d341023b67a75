"""KFP components: an Optuna study whose trials fan out as parallel tasks.

The study is named after the run id (or, for a run started without one, e.g. from the KFP
UI, after the KFP job id), so trials find it from the pipeline parameters alone (kfp.local
substitutes the loop item for upstream task outputs inside `ParallelFor`).
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def create_study(spec_json: str, run_id: str, job_id: str) -> str:
    """Create (or reuse) the study every trial task shares; returns its name."""
    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.tracking.steps import record_step
    from kubeloop.components.tune.task import create_study as create

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "create-study") as rec:
        name = create(spec, run_id or f"kfp-{job_id}")
        rec(study=name)
    return name


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def tune_trial(
    spec_json: str,
    run_id: str,
    job_id: str,
    trial_index: int,
    train: dsl.Input[dsl.Dataset],
    val: dsl.Input[dsl.Dataset],
) -> str:
    """Ask the shared study for parameters, train with pruning, tell the result."""
    import json
    import os

    if os.environ.get("KUBELOOP_TRIAL_THREADS"):  # set by the local runner: trials share cores
        import torch

        torch.set_num_threads(int(os.environ["KUBELOOP_TRIAL_THREADS"]))

    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.tracking.steps import record_step
    from kubeloop.components.tune.task import run_trial

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, f"trial-{trial_index}") as rec:
        result = run_trial(spec, run_id or f"kfp-{job_id}", train.path, val.path, trial_index)
        rec(trial=result)
    return json.dumps(result, default=str)


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def select_best(spec_json: str, run_id: str, job_id: str, trials: list) -> str:
    """Best parameters of the study, as JSON, once every trial has reported."""
    import json

    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.tracking.steps import record_step
    from kubeloop.components.tune.task import best_params

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "select-best") as rec:
        params = best_params(spec, run_id or f"kfp-{job_id}")
        rec(tuned_params=params, trials=len(trials))
    return json.dumps(params)
