"""The project spec: defaults, unknown keys, ${ENV} interpolation, paths, search space."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubeloop.components.core.errors import SpecError
from kubeloop.components.core.spec import load_spec, parse_spec, spec_from_json

MINIMAL = {"name": "proj", "data": {"source": "d.csv", "label": "y"}}


def test_minimal_spec_gets_defaults() -> None:
    spec = parse_spec(MINIMAL)
    assert spec.data.split.fractions == (0.8, 0.1, 0.1)
    assert spec.data.entity_column == "row_id"
    assert spec.data.timestamp_column == "ingested_at"
    assert spec.feature_service == "proj_v1"
    assert spec.tune.trials == 8


def test_unknown_key_is_rejected_with_its_path() -> None:
    raw = {**MINIMAL, "train": {"epoch": 3}}
    with pytest.raises(SpecError, match=r"train\.epoch: unknown key"):
        parse_spec(raw)
    with pytest.raises(SpecError, match=r"data\.split\.ratio: unknown key"):
        parse_spec({**MINIMAL, "data": {**MINIMAL["data"], "split": {"ratio": 1}}})


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_FILE", "s3://bucket/x.parquet")
    raw = {**MINIMAL, "data": {"source": "${DATA_FILE}", "label": "${LABEL:-churned}"}}
    spec = parse_spec(raw)
    assert spec.data.source == "s3://bucket/x.parquet"
    assert spec.data.label == "churned"


def test_missing_env_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(SpecError, match=r"data\.source: environment variable \$\{NOPE\}"):
        parse_spec({**MINIMAL, "data": {"source": "${NOPE}", "label": "y"}})


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, "low < high"),
        ({"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"hidden_units": {"type": "categorical"}}, "choices"),
        ({"momentum": {"type": "float", "low": 0, "high": 1}}, "unknown tunable"),
        ({"dropout": {"type": "float"}}, "needs 'low' and 'high'"),
    ],
)
def test_invalid_search_space(space: dict, message: str) -> None:
    with pytest.raises(SpecError, match=r"tune\.search_space") as err:
        parse_spec({**MINIMAL, "tune": {"search_space": space}})
    assert message in str(err.value)


def test_load_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "kubeloop.yaml").write_text(yaml.safe_dump(MINIMAL))
    spec = load_spec(tmp_path / "kubeloop.yaml")
    assert spec.data.source == str(tmp_path / "d.csv")
    assert spec.workdir == str(tmp_path / ".kubeloop")
    unresolved = load_spec(tmp_path / "kubeloop.yaml", resolve=False)
    assert unresolved.data.source == "d.csv"


def test_missing_and_malformed_spec_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_json_round_trip_and_hash() -> None:
    spec = parse_spec(MINIMAL)
    again = spec_from_json(spec.model_dump_json())
    assert again == spec
    assert again.spec_hash() == spec.spec_hash()
    changed = parse_spec({**MINIMAL, "train": {"epochs": 3}})
    assert changed.spec_hash() != spec.spec_hash()


def test_bad_fractions() -> None:
    with pytest.raises(SpecError, match=r"data\.split\.fractions"):
        parse_spec(
            {**MINIMAL, "data": {**MINIMAL["data"], "split": {"fractions": [0.5, 0.5, 0.5]}}}
        )


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"dropout": {"type": "float", "low": 0.1, "high": 1.5}}, "dropout: values must be"),
        ({"learning_rate": {"type": "float", "low": -1, "high": 0.1}}, "must be > 0"),
        ({"batch_size": {"type": "float", "low": 16, "high": 64}}, "whole numbers"),
        ({"n_layers": {"type": "int", "low": 0, "high": 3}}, "n_layers: values must be >= 1"),
        ({"hidden_units": {"type": "categorical", "choices": [32, "wide"]}}, "whole numbers"),
        ({"batch_size": {"type": "int", "low": 16, "high": 256, "log": True, "step": 16}},
         "'step' and 'log'"),
    ],
)  # fmt: skip
def test_search_space_bounds_are_checked_when_the_spec_loads(space: dict, message: str) -> None:
    with pytest.raises(SpecError, match=r"tune\.search_space") as err:
        parse_spec({**MINIMAL, "tune": {"search_space": space}})
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("expectation", "message"),
    [
        ({"kind": "not_null"}, "needs a 'column'"),
        ({"kind": "between", "column": "a"}, "needs 'min' and/or 'max'"),
        ({"kind": "in_set", "column": "a"}, "non-empty 'values'"),
        ({"kind": "type", "column": "a", "type": "float64"}, "numeric | string"),
    ],
)
def test_incomplete_expectations_are_rejected(expectation: dict, message: str) -> None:
    with pytest.raises(SpecError, match=r"validation\.expectations\.0") as err:
        parse_spec({**MINIMAL, "validation": {"expectations": [expectation]}})
    assert message in str(err.value)


def test_tune_storage_file_resolves_against_the_spec_folder(tmp_path: Path) -> None:
    raw = {**MINIMAL, "tune": {"storage": "studies/optuna.journal"}}
    (tmp_path / "kubeloop.yaml").write_text(yaml.safe_dump(raw))
    assert load_spec(tmp_path / "kubeloop.yaml").tune.storage == str(
        tmp_path / "studies" / "optuna.journal"
    )
    raw["tune"]["storage"] = "postgresql://db/optuna"
    (tmp_path / "kubeloop.yaml").write_text(yaml.safe_dump(raw))
    assert load_spec(tmp_path / "kubeloop.yaml").tune.storage == "postgresql://db/optuna"
