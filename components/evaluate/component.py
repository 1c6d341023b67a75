"""KFP component: test-split metrics, report and the gate (minimums + champion)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.

from typing import NamedTuple

from kfp import dsl

from kubeloop.components.core.image import PLATFORM_IMAGE


@dsl.component(base_image=PLATFORM_IMAGE, install_kfp_package=False)
def evaluate(
    spec_json: str,
    run_id: str,
    model: dsl.Input[dsl.Model],
    val: dsl.Input[dsl.Dataset],
    test: dsl.Input[dsl.Dataset],
    raw_val: dsl.Input[dsl.Dataset],
    raw_test: dsl.Input[dsl.Dataset],
    report: dsl.Output[dsl.HTML],
    metrics: dsl.Output[dsl.Metrics],
    evaluation: dsl.Output[dsl.Artifact],
) -> NamedTuple("EvaluateOutputs", [("gate_passed", bool), ("primary_value", float)]):  # type: ignore[valid-type]
    """Score the untouched test split and decide whether the model may be registered.

    `raw_val`/`raw_test` are the same rows before this run's cleaning: the champion scores
    them through its own preprocessing."""
    from collections import namedtuple

    from kubeloop.components.core.spec import spec_from_json
    from kubeloop.components.evaluate.task import run
    from kubeloop.components.tracking.steps import record_step

    spec = spec_from_json(spec_json)
    with record_step(spec, run_id, "evaluate") as rec:
        rec(artifacts={"report": report.path})
        result = run(
            spec,
            model.path,
            val.path,
            test.path,
            report.path,
            evaluation.path,
            raw_val_path=raw_val.path,
            raw_test_path=raw_test.path,
        )
        rec(
            metrics=result.metrics,
            gate=result.gate.model_dump(mode="json"),
            primary_metric=result.primary_metric,
        )
    for name, value in result.metrics.items():
        metrics.log_metric(name, float(value))
    EvaluateOutputs = namedtuple("EvaluateOutputs", ["gate_passed", "primary_value"])
    return EvaluateOutputs(result.gate.passed, float(result.primary_value))
