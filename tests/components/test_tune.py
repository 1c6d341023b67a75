"""Tune stage: trials as separate calls sharing one journal file, pruning, bad search spaces."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest

from kubeloop.components.core.errors import KubeloopError, SpecError
from kubeloop.components.core.spec import Spec, parse_spec
from kubeloop.components.tune import task as tune


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    plan = rng.choice(["basic", "pro"], size=n)
    label = (x1 - x2 + (plan == "pro") + 0.3 * rng.normal(size=n) > 0).astype(int)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "event_ts": pd.Timestamp("2024-01-01"),
            "x1": x1,
            "x2": x2,
            "plan": plan,
            "churned": label,
        }
    )


def _raw(tmp_path: Path, **tune_section: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "workdir": str(tmp_path / "work"),
        "data": {
            "source": "raw.csv",
            "label": "churned",
            "entity": "customer_id",
            "timestamp": "event_ts",
        },
        "train": {"batch_size": 64, "hidden_units": [8], "device": "cpu"},
        "tune": {
            "trials": 3,
            "epochs": 3,
            "search_space": {
                "learning_rate": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                "hidden_units": {"type": "categorical", "choices": [4, 8, 16]},
                "n_layers": {"type": "int", "low": 1, "high": 2},
            },
            **tune_section,
        },
    }


@pytest.fixture
def data(tmp_path: Path) -> tuple[str, str]:
    tr, va = tmp_path / "train.parquet", tmp_path / "val.parquet"
    _frame(300, 1).to_parquet(tr)
    _frame(100, 2).to_parquet(va)
    return str(tr), str(va)


def test_storage_defaults_to_journal_file_under_workdir(tmp_path: Path) -> None:
    spec = parse_spec(_raw(tmp_path))
    assert tune.storage_url(spec) == str(tmp_path / "work" / "tune" / "optuna.journal")
    rdb = parse_spec(_raw(tmp_path, storage="sqlite:///x.db"))
    assert tune.storage_url(rdb) == "sqlite:///x.db"
    assert tune.open_storage("postgresql://u@h/db") == "postgresql://u@h/db"


def test_trials_as_separate_calls_share_the_journal(tmp_path: Path, data: tuple[str, str]) -> None:
    spec = parse_spec(_raw(tmp_path))
    name = tune.create_study(spec, "t-run1", train_path=data[0])
    # NopPruner: this test is about sharing; the median pruner may legitimately cut trial 2.
    nop = optuna.pruners.NopPruner()
    results = [tune.run_trial(spec, name, *data, trial_index=i, pruner=nop) for i in range(3)]
    assert [r["number"] for r in results] == [0, 1, 2]
    assert all(r["state"] == "COMPLETE" for r in results)
    assert all(0.5 < r["value"] <= 1.0 for r in results)  # roc_auc on an easy problem
    assert Path(tune.storage_url(spec)).is_file()
    best = tune.best_params(spec, name)
    assert set(best) == {"learning_rate", "hidden_units", "n_layers"}
    assert best == max(results, key=lambda r: r["value"])["params"]
    # A fresh process sees the same study: reload from the file with a new storage object.
    study = optuna.load_study(study_name=name, storage=tune.open_storage(tune.storage_url(spec)))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert len(study.trials) == 3
    assert study.trials[1].user_attrs["trial_index"] == 1
    # Trials' learning curves land next to the study for TensorBoard.
    assert list((tmp_path / "work" / "tune" / "tensorboard" / name).glob("trial_*/events.*"))


def test_trial_suggestions_are_deterministic_per_index(
    tmp_path: Path, data: tuple[str, str]
) -> None:
    a = parse_spec(_raw(tmp_path / "a"))
    b = parse_spec(_raw(tmp_path / "b"))
    ra = tune.run_trial(a, "s", *data, trial_index=5)
    rb = tune.run_trial(b, "s", *data, trial_index=5)
    assert ra["params"] == rb["params"]
    assert ra["value"] == rb["value"]


def test_regression_study_minimizes_rmse(tmp_path: Path, data: tuple[str, str]) -> None:
    spec = parse_spec({**_raw(tmp_path), "data": {**_raw(tmp_path)["data"], "task": "regression"}})
    tune.create_study(spec, "reg")
    study = optuna.load_study(study_name="reg", storage=tune.open_storage(tune.storage_url(spec)))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_pruned_trial_is_recorded(tmp_path: Path, data: tuple[str, str]) -> None:
    spec = parse_spec(_raw(tmp_path))
    # data.task is auto and create_study had no data: the first trial creates the study.
    name = tune.create_study(spec, "pruned")
    res = tune.run_trial(spec, name, *data, trial_index=0, pruner=_AlwaysPrune())
    assert res["state"] == "PRUNED"
    assert res["epochs_run"] == 1
    assert res["value"] is not None
    study = optuna.load_study(study_name=name, storage=tune.open_storage(tune.storage_url(spec)))
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    with pytest.raises(KubeloopError, match="no trial of study 'pruned' completed"):
        tune.best_params(spec, name)


def test_failing_trial_is_recorded_and_the_study_goes_on(
    tmp_path: Path, data: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubeloop.components.train import task as train_task

    real_run = train_task.run
    calls: list[dict[str, Any]] = []

    def run_diverging_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["params"])
        if len(calls) == 1:  # what roc_auc_score raises on NaN predictions of a diverged net
            raise ValueError("Input contains NaN.")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(train_task, "run", run_diverging_first)
    spec = parse_spec(_raw(tmp_path))
    name = tune.create_study(spec, "diverge", train_path=data[0])
    nop = optuna.pruners.NopPruner()
    results = [tune.run_trial(spec, name, *data, trial_index=i, pruner=nop) for i in range(3)]
    failed = results[0]
    assert failed["state"] == "FAIL" and failed["value"] is None
    assert failed["error"] == "ValueError: Input contains NaN."
    assert failed["params"] == calls[0] and set(failed["params"]) == set(spec.tune.search_space)
    assert [r["state"] for r in results[1:]] == ["COMPLETE", "COMPLETE"]
    study = optuna.load_study(study_name=name, storage=tune.open_storage(tune.storage_url(spec)))
    states = [t.state for t in study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL and len(states) == 3
    assert study.trials[0].user_attrs["error"] == "ValueError: Input contains NaN."
    best = tune.best_params(spec, name)
    assert best == max(results[1:], key=lambda r: r["value"])["params"]


def test_config_error_in_a_trial_still_fails_the_run(
    tmp_path: Path, data: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubeloop.components.core.errors import DataError
    from kubeloop.components.train import task as train_task

    def bad_data(*_a: Any, **_k: Any) -> Any:
        raise DataError("train_path: label column 'churned' has 3 nulls")

    monkeypatch.setattr(train_task, "run", bad_data)
    spec = parse_spec(_raw(tmp_path))
    name = tune.create_study(spec, "bad-data", train_path=data[0])
    with pytest.raises(DataError, match="3 nulls"):
        tune.run_trial(spec, name, *data, trial_index=0)
    study = optuna.load_study(study_name=name, storage=tune.open_storage(tune.storage_url(spec)))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


def test_best_params_without_study(tmp_path: Path) -> None:
    with pytest.raises(KubeloopError, match="not found"):
        tune.best_params(parse_spec(_raw(tmp_path)), "never-ran")


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"type": "float", "low": 0.1, "high": 0.1}, "expected low < high"),
        ({"type": "int", "low": 5, "high": 1}, "expected low < high"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log scale needs low > 0"),
        ({"type": "categorical"}, "non-empty 'choices'"),
        ({"type": "categorical", "choices": []}, "non-empty 'choices'"),
        ({"type": "float", "low": 0.1}, "needs 'low' and 'high'"),
    ],
)
def test_invalid_search_param_rejected(tmp_path: Path, param: dict[str, Any], message: str) -> None:
    raw = _raw(tmp_path)
    raw["tune"]["search_space"] = {"learning_rate": param}
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert "tune.search_space.learning_rate" in str(err.value)
    assert message in str(err.value)


def test_unknown_tunable_parameter_rejected(tmp_path: Path) -> None:
    raw = _raw(tmp_path)
    raw["tune"]["search_space"]["momentum"] = {"type": "float", "low": 0.1, "high": 0.9}
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert "tune.search_space" in str(err.value)
    assert "unknown tunable parameter(s) ['momentum']" in str(err.value)


def test_tune_module_import_is_cheap() -> None:
    import subprocess

    code = (
        "import sys, kubeloop.components.tune.task; "
        "bad = {'torch', 'pandas', 'optuna', 'numpy'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _unused(spec: Spec) -> None:  # keeps the Spec import meaningful for type checkers
    del spec
