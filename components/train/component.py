"""KFP component: train the tabular PyTorch model (GPU settings come from the pipeline)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def train(
    spec_json: str,
    run_id: str,
    params_json: str,
    train: dsl.Input[dsl.Dataset],
    val: dsl.Input[dsl.Dataset],
    model: dsl.Output[dsl.Model],
    metrics: dsl.Output[dsl.Metrics],
) -> None:
    """Train with early stopping; learning curves are logged as KFP metrics."""
    import json
    import os

    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.tracking.steps import record_step
    from kubeloop.components.train.task import run

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "train") as rec:
        result = run(spec, train.path, val.path, model.path, params=json.loads(params_json))
        rec(
            train=result.model_dump(mode="json", exclude={"history"}),
            artifacts={"model": model.path, "tensorboard": os.path.join(model.path, "tensorboard")},
        )
    for row in result.history:
        epoch = int(row["epoch"])
        for key in ("train_loss", "val_loss", "val_metric"):
            metrics.log_metric(f"epoch_{epoch:03d}_{key}", float(row[key]))
    metrics.log_metric(f"best_{result.val_metric_name}", float(result.val_metric))
    model.metadata.update({"task": result.task, "best_epoch": result.best_epoch})
