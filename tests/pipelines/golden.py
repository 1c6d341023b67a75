"""Regenerate the golden compiled IR of every pipeline: `make golden` (after an intended
pipeline change)."""

from __future__ import annotations

import re
from pathlib import Path

from kubeloop.components.core.spec import load_spec
from kubeloop.pipelines.cli.batch import compile_batch_scoring
from kubeloop.pipelines.compile import compile_pipeline

GOLDEN_DIR = Path(__file__).parent / "golden"
GOLDEN_SPEC = GOLDEN_DIR / "kubeloop.yaml"
GOLDEN_IR = GOLDEN_DIR / "training_pipeline.yaml"
GOLDEN_BATCH_IR = GOLDEN_DIR / "batch_scoring_pipeline.yaml"


def comparable(ir: Path) -> str:
    """The IR's text without the kfp SDK's patch version (a fresh install may bring a newer
    2.17.x; the compiled pipeline is what the golden files pin)."""
    return re.sub(r"sdkVersion: kfp-[\w.]+", "sdkVersion: kfp-<version>", ir.read_text())


def compile_golden(out: Path) -> Path:
    return compile_pipeline(load_spec(GOLDEN_SPEC, resolve=False), out)


def compile_golden_batch(out: Path) -> Path:
    return compile_batch_scoring(load_spec(GOLDEN_SPEC, resolve=False), out)


if __name__ == "__main__":
    print(compile_golden(GOLDEN_IR))
    print(compile_golden_batch(GOLDEN_BATCH_IR))
