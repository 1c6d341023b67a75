"""Batch scoring with a real registered model: chunked = one big predict, atomic output."""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kubeloop.components.core.errors import DataError, KubeloopError
from kubeloop.components.predict.task import (
    ChunkDone,
    prediction_columns,
    resolve_tag,
    score_file,
)
from kubeloop.components.register import registry
from tests.tiny_model import rows, train_and_register

# ---------------------------------------------------------------- a tiny real model


@pytest.fixture(scope="module")
def tag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("predict_model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(tmp / "bentoml"))
        yield train_and_register(tmp)


@pytest.fixture(scope="module")
def model(tag: str) -> registry.RegisteredModel:
    return registry.load(tag)


@pytest.fixture()
def data() -> pd.DataFrame:
    """1,000 rows to score, a few dirty (missing x, unseen plan) and no label column."""
    df = rows(1000, seed=1).drop(columns="y")
    df.loc[[3, 500, 999], "x"] = np.nan
    df.loc[[7, 640], "plan"] = "enterprise"
    return df


def expected_scores(model: registry.RegisteredModel, df: pd.DataFrame) -> pd.DataFrame:
    """What one big ``model.predict`` over the whole frame says."""
    return prediction_columns(model.predict(df), model, df.index)


def tree(folder: Path) -> list[str]:
    """Every file and folder under `folder`, at any depth."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ---------------------------------------------------------------- scoring


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunked_scoring_matches_one_big_predict(
    tag: str, model: registry.RegisteredModel, data: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"scores{suffix}"
    data.to_csv(src, index=False) if suffix == ".csv" else data.to_parquet(src, index=False)
    seen: list[ChunkDone] = []

    result = score_file(tag, str(src), str(dst), chunk_rows=128, on_chunk=seen.append)

    assert (result.rows, result.chunks, result.model_tag) == (1000, 8, tag)
    assert [c.rows_done for c in seen][-1] == 1000 and seen[0].rows == 128
    assert seen[0].total_rows == (1000 if suffix == ".parquet" else None)
    out = pd.read_csv(dst) if suffix == ".csv" else pd.read_parquet(dst)
    want = expected_scores(model, data)
    assert list(out.columns) == [
        *data.columns,
        "prediction",
        "probability_no",
        "probability_yes",
        "model",
    ]
    pd.testing.assert_frame_equal(out[list(data.columns)], data, check_dtype=False)
    assert (out["prediction"] == want["prediction"]).all()
    np.testing.assert_allclose(out["probability_yes"], want["probability_yes"], rtol=1e-6)
    np.testing.assert_allclose(out["probability_no"] + out["probability_yes"], 1.0, rtol=1e-6)
    assert (out["model"] == tag).all()
    # the registered threshold decides, not 0.5
    threshold = model.threshold
    assert threshold is not None
    assert ((out["probability_yes"] >= threshold) == (out["prediction"] == "yes")).all()
    assert tree(tmp_path) == sorted([src.name, dst.name])


@pytest.mark.slow
def test_csv_to_parquet_keeps_types_and_stage_alias_resolves(
    tag: str, data: pd.DataFrame, tmp_path: Path
) -> None:
    src, dst = tmp_path / "in.csv", tmp_path / "out" / "scores.parquet"
    data.to_csv(src, index=False)
    registry.set_stage(tag, "production")
    for query, name in (("production", "churn"), ("churn:production", None), ("churn", None)):
        result = score_file(query, str(src), str(dst), chunk_rows=300, name=name)
        assert result.model_tag == tag and result.rows == 1000 and result.chunks == 4
    out = pd.read_parquet(dst)
    # a CSV's non-feature columns pass through as text (see the test below)
    assert out["id"].tolist() == data["id"].astype(str).tolist()
    assert out["x"].dtype == np.float64 and out["probability_yes"].dtype == np.float64


def failing_loader(calls: dict[str, int]) -> Any:
    """Loads the real model, whose predict fails on its third call."""

    def load(t: str) -> registry.RegisteredModel:
        m = registry.load(t)
        real = m.predict

        def predict(df: pd.DataFrame) -> np.ndarray:
            calls["n"] += 1
            if calls["n"] == 3:
                raise ValueError("could not convert string to float: 'oops'")
            return real(df)

        m.predict = predict  # type: ignore[method-assign]
        return m

    return load


@pytest.mark.slow
def test_failure_in_a_later_chunk_leaves_no_output(
    tag: str, data: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    src, dst = tmp_path / "in.parquet", tmp_path / "scores.parquet"
    data.to_parquet(src, index=False)
    dst.write_text("an older file of that name")
    before = tree(tmp_path)
    opened: list[Any] = []

    class TrackedParquetFile(pq.ParquetFile):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)
            self.was_closed = False

        def close(self, force: bool = False) -> None:
            self.was_closed = True
            super().close(force=force)

    monkeypatch.setattr(pq, "ParquetFile", TrackedParquetFile)
    calls = {"n": 0}
    with pytest.raises(DataError, match=r"rows 201-300: model .* failed: could not convert"):
        try:
            score_file(tag, str(src), str(dst), chunk_rows=100, loader=failing_loader(calls))
        except DataError:
            # while the traceback still holds score_file's frame: closed, not left to the GC
            closed_while_raising = [f.was_closed for f in opened]
            raise
    assert closed_while_raising == [True]
    assert calls["n"] == 3
    assert dst.read_text() == "an older file of that name"  # untouched
    assert tree(tmp_path) == before

    # into folders that do not exist yet: made for the output, removed again on failure
    calls["n"] = 0
    deep = tmp_path / "new" / "deeper" / "scores.csv"
    with pytest.raises(DataError, match=r"rows 201-300"):
        score_file(tag, str(src), str(deep), chunk_rows=100, loader=failing_loader(calls))
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_csv_pass_through_columns_come_out_as_written(
    tag: str, data: pd.DataFrame, tmp_path: Path
) -> None:
    """Non-feature CSV columns are text, not types guessed chunk by chunk: ids keep leading
    zeros, a blank id stays blank (no '8.0' in that chunk only), 'NA'/'null' stay words, and a
    column whose first value comes in a late chunk still goes into one Parquet schema."""
    src = tmp_path / "in.csv"
    dirty = data.astype({"id": object})
    dirty["id"] = [f"{i:03d}" for i in range(len(dirty))]
    dirty.loc[700, "id"] = ""
    dirty["note"] = ""
    dirty.loc[[10, 11, 950], "note"] = ["NA", "null", "late text"]
    dirty.loc[900, "note"] = "cust-900"
    dirty.to_csv(src, index=False)
    as_text = pd.read_csv(src, dtype=str, keep_default_na=False)[["id", "note"]]
    assert as_text["id"].iloc[7] == "007"  # the file really holds the text

    score_file(tag, str(src), str(tmp_path / "scores.csv"), chunk_rows=200)
    score_file(tag, str(src), str(tmp_path / "scores.parquet"), chunk_rows=200)

    csv_out = pd.read_csv(tmp_path / "scores.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(csv_out[["id", "note"]], as_text)
    parquet_out = pd.read_parquet(tmp_path / "scores.parquet")
    pd.testing.assert_frame_equal(parquet_out[["id", "note"]], as_text, check_dtype=False)
    assert (csv_out["prediction"] == parquet_out["prediction"].astype(str)).all()


# ---------------------------------------------------------------- bad inputs


def bad_inputs(tmp: Path, data: pd.DataFrame) -> dict[str, tuple[dict[str, Any], str]]:
    """name → (score_file arguments, a phrase the error must contain)."""
    good = tmp / "good.csv"
    data.to_csv(good, index=False)
    (tmp / "empty.csv").write_text("")
    (tmp / "header.csv").write_text("id,x,plan\n")
    (tmp / "data.txt").write_text("id,x,plan\n1,2,basic\n")
    (tmp / "junk.parquet").write_bytes(b"not parquet at all")
    data.drop(columns="plan").to_csv(tmp / "noplan.csv", index=False)
    data.assign(prediction=1).to_csv(tmp / "scored.csv", index=False)
    out = str(tmp / "scores.csv")
    return {
        "missing file": ({"input_path": str(tmp / "nope.csv")}, "file not found"),
        "empty file": ({"input_path": str(tmp / "empty.csv")}, "file is empty"),
        "header only": ({"input_path": str(tmp / "header.csv")}, "file has no rows"),
        "input suffix": ({"input_path": str(tmp / "data.txt")}, "expected a .csv or .parquet"),
        "output suffix": ({"output_path": str(tmp / "s.json")}, "--output: expected a .csv"),
        "not parquet": ({"input_path": str(tmp / "junk.parquet")}, "cannot read"),
        "missing feature": ({"input_path": str(tmp / "noplan.csv")}, "['plan']"),
        "output column": ({"input_path": str(tmp / "scored.csv")}, "['prediction']"),
        "output is input": ({"output_path": str(good)}, "is the input file"),
        "zero chunk rows": ({"chunk_rows": 0}, "--chunk-rows"),
        "unknown version": ({"tag": "churn:nope"}, "not found"),
        "unknown name": ({"tag": "ghost:latest"}, "not found"),
        "bare stage": ({"tag": "production"}, "--name"),
        "empty stage": ({"tag": "previous", "name": "churn"}, "no model 'churn' in stage"),
        "name mismatch": ({"tag": "churn:latest", "name": "other"}, "--name is 'other'"),
        "__good__": ({"input_path": str(good), "output_path": out}, ""),
    }


@pytest.mark.slow
def test_bad_inputs_raise_clear_errors_and_write_nothing(
    tag: str, data: pd.DataFrame, tmp_path: Path
) -> None:
    cases = bad_inputs(tmp_path, data)
    defaults = cases.pop("__good__")[0]
    for case, (override, phrase) in cases.items():
        args = {"tag": tag, **defaults, **override}
        before = tree(tmp_path)
        with pytest.raises(KubeloopError) as err:
            score_file(args.pop("tag"), args.pop("input_path"), args.pop("output_path"), **args)
        assert phrase in str(err.value), (case, str(err.value))
        assert tree(tmp_path) == before, case


def test_resolve_tag() -> None:
    assert resolve_tag("production", "churn") == "churn:production"
    assert resolve_tag("candidate", "churn") == "churn:candidate"
    assert resolve_tag("churn:abc") == "churn:abc"
    assert resolve_tag("churn:latest", "churn") == "churn:latest"
    with pytest.raises(KubeloopError, match="--name"):
        resolve_tag("production")
    with pytest.raises(KubeloopError, match="empty"):
        resolve_tag("  ")


# ---------------------------------------------------------------- prediction columns


class FakePredictor:
    def __init__(self, task: str, classes: list[Any]) -> None:
        self.task = task
        self.classes = classes
        self.features = ["x"]

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        raise AssertionError("not used")


def fake_model(task: str, classes: list[Any], threshold: float | None) -> Any:
    info = registry.ModelInfo(
        tag="m:v1",
        name="m",
        version="v1",
        stage="candidate",
        created_at=datetime(2024, 1, 1),
        labels={},
        metrics={},
        metadata={} if threshold is None else {"threshold": threshold},
        path="/nowhere",
    )
    return registry.RegisteredModel(info, FakePredictor(task, classes), lambda df: df, {})


def test_prediction_columns_per_task() -> None:
    binary = prediction_columns(
        np.array([[0.7, 0.3], [0.8, 0.2]]), fake_model("binary", [0, 1], 0.25), [10, 11]
    )
    assert binary["prediction"].tolist() == [1, 0]  # 0.3 >= 0.25, 0.2 < 0.25
    assert list(binary.columns) == ["prediction", "probability_0", "probability_1", "model"]
    assert binary.index.tolist() == [10, 11] and (binary["model"] == "m:v1").all()
    default = prediction_columns(
        np.array([[0.5, 0.5], [0.6, 0.4]]), fake_model("binary", ["n", "y"], None), [0, 1]
    )
    assert default["prediction"].tolist() == ["y", "n"]  # 0.5 without a registered threshold
    multi = prediction_columns(
        np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]),
        fake_model("multiclass", ["a", "b", "c"], None),
        [0, 1],
    )
    assert multi["prediction"].tolist() == ["b", "a"]
    assert multi["probability_c"].tolist() == [0.2, 0.3]
    floats = prediction_columns(
        np.array([[0.9, 0.1]]), fake_model("binary", [0.0, 1.0], None), [0]
    )  # labels that were floats in training (a label column with gaps) read as the integers
    assert list(floats.columns) == ["prediction", "probability_0", "probability_1", "model"]
    reg = prediction_columns(np.array([1.5, -2.0]), fake_model("regression", [], None), [0, 1])
    assert list(reg.columns) == ["prediction", "model"]
    assert reg["prediction"].tolist() == [1.5, -2.0]


# ---------------------------------------------------------------- flat memory


@pytest.mark.slow
def test_memory_stays_flat_with_small_chunks(
    tag: str, model: registry.RegisteredModel, tmp_path: Path
) -> None:
    """Not a timing: Python-side peak allocations (tracemalloc sees numpy/pandas buffers,
    not Arrow's) of scoring CSV into Parquet in 20k-row chunks do not grow with the file
    (40k vs 200k rows) and stay well below scoring the 200k rows in one chunk. (CSV output
    under tracemalloc is several times slower: pandas formats text through Python objects.)"""
    big, small = tmp_path / "big.csv", tmp_path / "small.csv"
    frame = rows(200_000, seed=2).drop(columns="y")
    frame.to_csv(big, index=False)
    frame.iloc[:40_000].to_csv(small, index=False)

    def peak(src: Path, chunk_rows: int) -> int:
        tracemalloc.start()
        try:
            score_file(
                tag,
                str(src),
                str(tmp_path / "out.parquet"),
                chunk_rows=chunk_rows,
                loader=lambda _: model,  # loaded once, outside the measurement
            )
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    chunked_small, chunked_big, whole = peak(small, 20_000), peak(big, 20_000), peak(big, 200_000)
    assert chunked_big < 1.5 * chunked_small, (chunked_big, chunked_small)
    assert chunked_big < whole / 4, (chunked_big, whole)


# ---------------------------------------------------------------- shared file checks


def test_input_checks_are_the_ones_read_table_uses(tmp_path: Path) -> None:
    """score_file and read_table share check_table_path: same checks, same messages."""
    from kubeloop.components.core.io import check_table_path, read_table, table_format

    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "a.CSV").write_text("x\n1\n")
    (tmp_path / "artifact").write_bytes(b"PAR1")
    (tmp_path / "a.txt").write_text("x\n1\n")
    cases = {
        "nope.csv": "file not found",
        "empty.csv": "file is empty",
        "a.txt": "expected a .csv or .parquet file",
    }
    for file, phrase in cases.items():
        path = str(tmp_path / file)
        for what, call in (
            ("--input", lambda p: score_file("churn:v1", p, str(tmp_path / "o.csv"))),
            ("data.source", lambda p: read_table(p)),
        ):
            with pytest.raises(DataError, match="^" + re.escape(f"{what}: {phrase}")):
                call(path)
    assert check_table_path(tmp_path / "a.CSV", "x") == "csv"
    assert check_table_path(tmp_path / "artifact", "x", bare="parquet") == "parquet"
    with pytest.raises(DataError, match=r"x: expected a \.csv"):
        check_table_path(tmp_path / "artifact", "x")
    assert table_format("s3://bucket/t.pq?version=3", "x") == "parquet"  # no file check
    assert check_table_path("gs://bucket/t.csv", "x") == "csv"
