"""Batch scoring: stream a CSV or Parquet file through a registered model, chunk by chunk.

Memory stays flat: one chunk is read, scored and appended to the output before the next one
is read (CSV through ``pandas.read_csv(chunksize=...)``, Parquet through
``ParquetFile.iter_batches``); chunks are never concatenated. The output is written to a
temporary file beside the target and moved into place only when every row is scored, so a
failure part-way leaves no output (and keeps an older file of that name intact).

Output rows = the input columns, then ``prediction`` (binary: the positive class when its
probability reaches the registered decision threshold; multiclass: the most probable class;
regression: the value), ``probability_<class>`` per class (classification) and ``model`` (the
resolved tag, so every row says which version scored it).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, computed_field

from kubeloop.components.core.decision import predict_classes
from kubeloop.components.core.errors import DataError, KubeloopError
from kubeloop.components.core.io import atomic_path, check_table_path, table_format
from kubeloop.components.core.schema import category_text
from kubeloop.components.core.spec import ResolvedTask

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from kubeloop.components.register.registry import RegisteredModel

PREDICTION = "prediction"
MODEL = "model"
PROBABILITY_PREFIX = "probability_"

ModelLoader = Callable[[str], "RegisteredModel"]


class ScoreResult(BaseModel):
    """What one batch-scoring run did."""

    model_tag: str
    input_path: str
    output_path: str
    rows: int
    chunks: int
    seconds: float  # reading, scoring and writing (model loading excluded)
    load_seconds: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class ChunkDone:
    """Progress after one chunk: its number (from 1), its rows, rows so far, and the
    file's row count when the format tells it up front (Parquet) else None (CSV)."""

    index: int
    rows: int
    rows_done: int
    total_rows: int | None


@dataclass
class _Chunk:
    frame: pd.DataFrame
    arrow: pa.RecordBatch | None = None  # Parquet input: the original columns, types kept


_Chunks = Generator[_Chunk, None, None]  # a generator: closing it closes the file it reads


# ---------------------------------------------------------------------------- model


def resolve_tag(tag: str, name: str | None = None) -> str:
    """The registry query for `tag`: itself, or ``name:<stage>`` for a bare stage word
    (``production``, ``candidate``, ...), which needs `name`."""
    from kubeloop.components.register.registry import STAGES

    tag = tag.strip()
    if not tag:
        raise KubeloopError("--model: expected a model tag or a stage, got an empty string")
    if tag in STAGES:
        if not name:
            raise KubeloopError(
                f"--model {tag}: a bare stage needs the model name (--name NAME), "
                f"or write it as NAME:{tag}"
            )
        return f"{name}:{tag}"
    model_name = tag.partition(":")[0]
    if name and model_name != name:
        raise KubeloopError(f"--model {tag} names model {model_name!r} but --name is {name!r}")
    return tag


def _load_model(tag: str, name: str | None, loader: ModelLoader | None) -> RegisteredModel:
    from kubeloop.components.register import registry

    query = resolve_tag(tag, name)
    full_tag = registry.get(query).tag  # stage/latest → the exact version, named in the output
    return (loader or registry.load)(full_tag)


# ---------------------------------------------------------------------------- input


def _csv_chunks(path: Path, chunk_rows: int, features: list[str]) -> tuple[_Chunks, None]:
    """Feature columns get pandas' type inference and NA handling (clean needs numbers and
    missing values); every other column is passed through as the text in the file. Guessing
    types chunk by chunk would turn an id '007' into 7, '8' into '8.0' in a chunk with a
    blank, the text 'NA' into an empty cell, and clash in Parquet output across chunks."""
    import pandas as pd
    from pandas._libs.parsers import STR_NA_VALUES  # pandas' default NA words

    try:
        header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except pd.errors.EmptyDataError:
        raise DataError(f"--input: file has no columns: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"--input: cannot read {path}: {err}") from None
    wanted = set(features)
    na_words = sorted(STR_NA_VALUES)
    options: dict[str, Any] = {
        "dtype": {c: str for c in header if c not in wanted},
        "keep_default_na": False,  # ... except where na_values names the column
        "na_values": {c: na_words for c in header if c in wanted},
    }

    def chunks() -> _Chunks:
        try:
            with pd.read_csv(path, chunksize=chunk_rows, low_memory=False, **options) as reader:
                for frame in reader:
                    yield _Chunk(frame)
        except pd.errors.EmptyDataError:
            raise DataError(f"--input: file has no columns: {path}") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
            raise DataError(f"--input: cannot read {path}: {err}") from None

    return chunks(), None


def _parquet_chunks(path: Path, chunk_rows: int) -> tuple[_Chunks, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"--input: cannot read {path} as Parquet: {err}") from None

    def chunks() -> _Chunks:
        try:
            with contextlib.closing(pf):
                for batch in pf.iter_batches(batch_size=chunk_rows):
                    yield _Chunk(batch.to_pandas(), batch)
        except pa.ArrowException as err:
            raise DataError(f"--input: cannot read {path}: {err}") from None

    return chunks(), pf.metadata.num_rows


def _check_columns(frame: pd.DataFrame, model: RegisteredModel, path: Path) -> None:
    columns = set(map(str, frame.columns))
    missing = [c for c in model.features if c not in columns]
    if missing:
        raise DataError(
            f"--input {path}: missing the feature column(s) {missing} that model "
            f"{model.info.tag} needs (file has: {_some(sorted(columns))})"
        )
    taken = sorted(c for c in columns if _is_output_column(c))
    if taken:
        raise DataError(
            f"--input {path}: column(s) {taken} would be overwritten by the scores "
            f"(drop or rename them first)"
        )


def _some(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _is_output_column(column: str) -> bool:
    return column in (PREDICTION, MODEL) or column.startswith(PROBABILITY_PREFIX)


# ---------------------------------------------------------------------------- scoring


def prediction_columns(pred: np.ndarray, model: RegisteredModel, index: Any) -> pd.DataFrame:
    """``prediction``, ``probability_<class>`` (classification) and ``model`` for one chunk."""
    import numpy as np
    import pandas as pd

    cols: dict[str, Any] = {}
    if model.task == "regression":
        cols[PREDICTION] = np.asarray(pred, dtype=np.float64).reshape(-1)
    else:
        classes = np.asarray(model.classes)
        idx = predict_classes(pred, cast(ResolvedTask, model.task), model.threshold)
        cols[PREDICTION] = classes[idx]
        for k, cls in enumerate(model.classes):
            # category_text: labels trained as floats (1.0) name the column probability_1
            cols[f"{PROBABILITY_PREFIX}{category_text(cls)}"] = pred[:, k]
    cols[MODEL] = model.info.tag
    return pd.DataFrame(cols, index=index)


def _score(chunk: _Chunk, model: RegisteredModel, path: Path, start: int) -> pd.DataFrame:
    rows = f"rows {start + 1}-{start + len(chunk.frame)}"
    try:
        pred = model.predict(chunk.frame)
    except KubeloopError as err:
        raise DataError(f"--input {path}, {rows}: {err}") from err
    except (ValueError, TypeError, KeyError) as err:
        raise DataError(f"--input {path}, {rows}: model {model.info.tag} failed: {err}") from err
    n_classes = len(model.classes)
    expected = (len(chunk.frame),) if model.task == "regression" else (len(chunk.frame), n_classes)
    if pred.shape != expected:
        raise KubeloopError(
            f"model {model.info.tag} returned shape {pred.shape} for {rows}, expected {expected}"
        )
    return prediction_columns(pred, model, chunk.frame.index)


# ---------------------------------------------------------------------------- output


class _CsvSink:
    def __init__(self, path: Path) -> None:
        self._file = path.open("w", newline="")
        self._header = True

    def write(self, chunk: _Chunk, scores: pd.DataFrame, rows: str) -> None:
        import pandas as pd

        out = pd.concat([chunk.frame, scores], axis=1)
        out.to_csv(self._file, header=self._header, index=False)
        self._header = False

    def close(self) -> None:
        self._file.close()


class _ParquetSink:
    """One ``ParquetWriter``; the first chunk fixes the schema and later chunks are cast to
    it (CSV feature columns infer types chunk by chunk, e.g. an int column with gaps later)."""

    def __init__(self, path: Path, input_path: Path) -> None:
        self._path = path
        self._input = input_path
        self._writer: Any = None
        self._schema: Any = None

    def write(self, chunk: _Chunk, scores: pd.DataFrame, rows: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        base = (
            pa.Table.from_batches([chunk.arrow])
            if chunk.arrow is not None
            else pa.Table.from_pandas(chunk.frame, preserve_index=False)
        )
        table = base
        extra = pa.Table.from_pandas(scores, preserve_index=False)
        for name, column in zip(extra.column_names, extra.columns, strict=True):
            table = table.append_column(name, column)
        table = table.replace_schema_metadata(None)
        if self._writer is None:
            self._schema = table.schema
            self._writer = pq.ParquetWriter(self._path, self._schema)
        else:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowException, ValueError) as err:
                raise DataError(
                    f"--input {self._input}, {rows}: column types differ from the first chunk "
                    f"and cannot be written to one Parquet file ({err}); write CSV instead or "
                    "fix the column's type"
                ) from None
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


# ---------------------------------------------------------------------------- entry point


def score_file(
    tag: str,
    input_path: str,
    output_path: str,
    *,
    chunk_rows: int = 50_000,
    name: str | None = None,
    loader: ModelLoader | None = None,
    on_chunk: Callable[[ChunkDone], None] | None = None,
) -> ScoreResult:
    """Score every row of `input_path` with a registered model into `output_path`.

    `tag`: ``name:version``, ``name:latest``, ``name:<stage>``, or a bare stage word
    (``production``, ``candidate``, ...) with `name`. Formats follow the suffixes (.csv,
    .parquet). `loader` defaults to :func:`registry.load` (tests pass a wrapper);
    `on_chunk` is called after each chunk is written."""
    if chunk_rows < 1:
        raise KubeloopError(f"--chunk-rows: expected a positive number of rows, got {chunk_rows}")
    src, dst = Path(input_path), Path(output_path)
    in_format = check_table_path(src, "--input")
    out_format = table_format(dst, "--output")
    if dst.is_dir():
        raise DataError(f"--output: {dst} is a directory; expected a file path")
    if dst.resolve() == src.resolve():
        raise DataError(f"--output: {dst} is the input file; write the scores elsewhere")

    started = time.perf_counter()
    model = _load_model(tag, name, loader)
    load_seconds = time.perf_counter() - started

    started = time.perf_counter()
    chunks, total = (
        _csv_chunks(src, chunk_rows, model.features)
        if in_format == "csv"
        else _parquet_chunks(src, chunk_rows)
    )
    with contextlib.closing(chunks):  # on any error too: the reader lets go of the file
        nonempty = (c for c in chunks if len(c.frame))
        first = next(nonempty, None)  # read before any output exists: bad input leaves nothing
        if first is None:
            raise DataError(f"--input: file has no rows: {src}")
        _check_columns(first.frame, model, src)
        created = _make_folders(dst.parent)
        try:
            rows, n_chunks = _write_scores(
                itertools.chain([first], nonempty), model, src, dst, out_format, total, on_chunk
            )
        except BaseException:
            _remove_empty(created)  # a failed run leaves no new folder behind either
            raise
    return ScoreResult(
        model_tag=model.info.tag,
        input_path=str(src),
        output_path=str(dst),
        rows=rows,
        chunks=n_chunks,
        seconds=time.perf_counter() - started,
        load_seconds=load_seconds,
    )


def _write_scores(
    chunks: Iterator[_Chunk],
    model: RegisteredModel,
    src: Path,
    dst: Path,
    out_format: str,
    total: int | None,
    on_chunk: Callable[[ChunkDone], None] | None,
) -> tuple[int, int]:
    rows = n_chunks = 0
    with atomic_path(dst) as tmp:
        sink = _CsvSink(tmp) if out_format == "csv" else _ParquetSink(tmp, src)
        try:
            for chunk in chunks:
                scores = _score(chunk, model, src, rows)
                sink.write(chunk, scores, f"rows {rows + 1}-{rows + len(chunk.frame)}")
                rows += len(chunk.frame)
                n_chunks += 1
                if on_chunk is not None:
                    on_chunk(ChunkDone(n_chunks, len(chunk.frame), rows, total))
        finally:
            sink.close()
    return rows, n_chunks


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns the ones created, deepest first."""
    created = []
    missing = folder
    while not missing.exists():
        created.append(missing)
        missing = missing.parent
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first; stop at one that holds something
        try:
            folder.rmdir()
        except OSError:
            return
