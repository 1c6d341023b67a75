"""The repo layout contract: one import name over fixed folders, cheap component imports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_packages_listed_in_pyproject_match_folders() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {"kubeloop"}
    for top in ("components", "pipelines", "serving"):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT).parts
            on_disk.add(".".join(("kubeloop", *rel)))
    assert listed == on_disk


def test_top_level_layout() -> None:
    for name in (
        "pyproject.toml",
        "components",
        "pipelines",
        "serving",
        "feature_repo",
        "k8s",
        "helm",
        "tests",
        "README.md",
        "Makefile",
        ".ci/run",
    ):
        assert (ROOT / name).exists(), name


def test_compiling_the_pipeline_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from kubeloop.pipelines.training import build_training_pipeline\n"
        "heavy = {'torch', 'pandas', 'feast', 'great_expectations', 'optuna', 'sklearn',"
        " 'bentoml', 'matplotlib', 'numpy.linalg'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_stage_has_a_task_and_a_component() -> None:
    stages = [
        "ingest",
        "validate",
        "split",
        "clean",
        "features",
        "tune",
        "train",
        "evaluate",
        "register",
    ]
    for stage in stages:
        folder = ROOT / "components" / stage
        assert (folder / "task.py").is_file(), stage
        assert (folder / "component.py").is_file(), stage
