"""Tiny real models for the other tasks (multiclass, regression), registered through the real
tasks like :mod:`tests.tiny_model` (same features: numeric ``x``, categorical ``plan``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd


def rows(n: int, task: Literal["multiclass", "regression"], seed: int = 0) -> pd.DataFrame:
    """`y` is three classes by the range of x (multiclass) or 3x + noise (regression)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    noisy = x + 0.2 * rng.normal(size=n)
    y = (
        np.select([noisy < -0.5, noisy > 0.5], ["low", "high"], "mid")
        if task == "multiclass"
        else 3.0 * x + 0.1 * rng.normal(size=n)
    )
    return pd.DataFrame(
        {"id": np.arange(n), "x": x, "plan": rng.choice(["basic", "pro"], size=n), "y": y}
    )


def train_and_register_task(tmp: Path, task: Literal["multiclass", "regression"], name: str) -> str:
    """Register a `task` model called `name` (600 rows, 2 epochs); returns its tag.
    BENTOML_HOME must already point at a scratch store."""
    from kubeloop.components.clean.task import apply, fit
    from kubeloop.components.core.spec import parse_spec
    from kubeloop.components.evaluate.task import run as evaluate_run
    from kubeloop.components.register import task as register_task
    from kubeloop.components.train.task import run as train_run

    tmp.mkdir(parents=True, exist_ok=True)
    raw = rows(600, task).assign(ingested_at=pd.Timestamp("2024-01-01"))
    spec = parse_spec(
        {
            "name": name,
            "workdir": str(tmp / "wd"),
            "data": {"source": "raw.csv", "label": "y", "entity": "id", "task": task},
            "train": {
                "epochs": 2,
                "learning_rate": 0.05,
                "hidden_units": [8],
                "batch_size": 64,
                "device": "cpu",
                "seed": 0,
            },
        }
    )
    parts = {"train": raw.iloc[:400], "val": raw.iloc[400:500], "test": raw.iloc[500:]}
    params = fit(parts["train"], spec)
    paths = {}
    for part, df in parts.items():
        paths[part] = str(tmp / f"{part}.parquet")
        apply(df, params)[0].to_parquet(paths[part])
    clean_path = tmp / "clean_params.json"
    clean_path.write_text(params.model_dump_json())
    model_dir = str(tmp / "model")
    train_run(spec, paths["train"], paths["val"], model_dir)
    eval_json = str(tmp / "eval.json")
    evaluate_run(spec, model_dir, paths["val"], paths["test"], str(tmp / "r.html"), eval_json)
    tag = register_task.run(
        spec, model_dir, str(clean_path), eval_json, paths["train"], "fp", "run-1"
    )
    assert tag is not None, f"the tiny {task} model failed its own gate"
    return tag
