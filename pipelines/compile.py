"""Compile the training pipeline to Kubeflow Pipelines IR YAML."""

from __future__ import annotations

from pathlib import Path

from kfp import compiler

from kubeloop.components.core.spec import Spec
from kubeloop.pipelines.training import build_training_pipeline


def compile_pipeline(spec: Spec, out: str | Path) -> Path:
    """Write the IR YAML for `spec` to `out`; the spec is embedded as a parameter default."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_training_pipeline(spec), package_path=str(out))
    return out
