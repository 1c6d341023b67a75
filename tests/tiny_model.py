"""A tiny real model for tests that need one in the store: trained, evaluated and
registered through the real tasks (clean, train, evaluate, register) in a few seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def rows(n: int, seed: int) -> pd.DataFrame:
    """Raw rows the way a user has them: an id, a numeric and a categorical feature, and a
    yes/no label driven by the numeric one."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "x": x,
            "plan": rng.choice(["basic", "pro"], size=n),
            "y": np.where(x + 0.5 * rng.normal(size=n) > 0, "yes", "no"),
        }
    )


def train_and_register(tmp: Path, seed: int = 0, hidden_units: list[int] | None = None) -> str:
    """Register a binary model named ``churn`` (600 rows, 2 epochs); returns its tag.
    BENTOML_HOME must already point at a scratch store. A second model needs another `seed`
    (other data and weights): an identical model ties with the first and the gate refuses it.
    `hidden_units` (default [8]) makes a costlier model for benchmarks."""
    from kubeloop.components.clean.task import apply, fit
    from kubeloop.components.core.spec import parse_spec
    from kubeloop.components.evaluate.task import run as evaluate_run
    from kubeloop.components.register import task as register_task
    from kubeloop.components.train.task import run as train_run

    raw = rows(600, seed=seed).assign(ingested_at=pd.Timestamp("2024-01-01"))
    spec = parse_spec(
        {
            "name": "churn",
            "workdir": str(tmp / "wd"),
            "data": {"source": "raw.csv", "label": "y", "entity": "id"},
            "train": {
                "epochs": 2,
                "learning_rate": 0.05,
                "hidden_units": hidden_units or [8],
                "batch_size": 64,
                "device": "cpu",
                "seed": seed,
            },
            "evaluate": {"minimums": {"roc_auc": 0.6}},
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
    assert tag is not None, "the tiny model failed its own gate"
    return tag
