"""The compiled IR: golden file, GPU settings from the spec, and no run-time pip installs."""

from __future__ import annotations

from pathlib import Path

import yaml

from kubeloop.components.core.image import PLATFORM_IMAGE
from tests.pipelines.golden import (
    GOLDEN_BATCH_IR,
    GOLDEN_IR,
    comparable,
    compile_golden,
    compile_golden_batch,
)


def test_compiled_ir_matches_golden(tmp_path: Path) -> None:
    out = compile_golden(tmp_path / "ir.yaml")
    assert comparable(out) == comparable(GOLDEN_IR), (
        "compiled IR changed; if intended, run `make golden` and review the diff"
    )


def test_batch_scoring_ir_matches_golden(tmp_path: Path) -> None:
    out = compile_golden_batch(tmp_path / "batch.yaml")
    assert comparable(out) == comparable(GOLDEN_BATCH_IR), (
        "compiled batch-scoring IR changed; if intended, run `make golden` and review the diff"
    )


def _docs(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def test_ir_carries_gpu_request_node_selector_and_tolerations() -> None:
    spec_doc, platform = _docs(GOLDEN_IR)
    executors = spec_doc["deploymentSpec"]["executors"]
    for name in ("exec-train", "exec-tune-trial"):
        acc = executors[name]["container"]["resources"]["accelerator"]
        assert acc["resourceType"] == "nvidia.com/gpu"
        assert acc["resourceCount"] == "1"
        k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][name]
        assert k8s["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert k8s["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    assert "resources" not in executors["exec-ingest"]["container"]


def test_every_component_runs_from_the_platform_image_without_pip() -> None:
    spec_doc, _ = _docs(GOLDEN_IR)
    executors = spec_doc["deploymentSpec"]["executors"]
    assert len(executors) == 11
    for name, ex in executors.items():
        assert ex["container"]["image"] == PLATFORM_IMAGE, name
        assert "pip install" not in " ".join(ex["container"]["command"]), name


def test_trials_fan_out_with_the_spec_parallelism() -> None:
    text = GOLDEN_IR.read_text()
    assert "parallelismLimit: 2" in text
    assert "'[0, 1, 2, 3]'" in text or "[0, 1, 2, 3]" in text


def test_runs_started_without_a_run_id_get_their_own_study() -> None:
    """The KFP job id names the study when `run_id` is left empty (e.g. a run from the UI)."""
    spec_doc, _ = _docs(GOLDEN_IR)
    assert spec_doc["root"]["inputDefinitions"]["parameters"]["run_id"]["defaultValue"] == ""
    text = GOLDEN_IR.read_text()
    assert text.count("constant: '{{$.pipeline_job_uuid}}'") == 3  # study, trials, select
