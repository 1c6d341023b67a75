"""Prediction log: every answered row as Parquet, for later label joins and drift checks.

`PredictionLog.log` only appends to an in-memory buffer (bounded: a full buffer drops the
records and reports how many through `on_drop`, so the request path never waits on disk).
A background thread writes parts of at most `max_rows_per_file` rows, one as soon as that
many are waiting or when the oldest waiting record is `max_seconds_per_file` old, as

    <folder>/date=YYYY-MM-DD/part-<UTC HHMMSSffffff>-<uuid8>.parquet

(the date and time of the part's first record; Hive-style folders, which pandas, pyarrow,
DuckDB and Spark read as a `date` partition). Each part is written beside its final name
and renamed into place, so readers never see half a file.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

logger = logging.getLogger(__name__)

PART_GLOB = "date=*/part-*.parquet"


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One scored row (JSON text columns keep any feature set in one fixed schema)."""

    ts: datetime  # UTC
    request_id: str
    row: int  # index of the row in its request
    variant: str  # stable | canary | shadow
    model: str  # tag that answered
    entity_id: str | None
    features: str  # JSON of the raw input row
    prediction: str  # JSON
    probabilities: str | None  # JSON, classification only
    shadow: bool


COLUMNS = [f.name for f in fields(PredictionRecord)]


def arrow_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("ts", pa.timestamp("us", tz="UTC")),
            ("request_id", pa.string()),
            ("row", pa.int32()),
            ("variant", pa.string()),
            ("model", pa.string()),
            ("entity_id", pa.string()),
            ("features", pa.string()),
            ("prediction", pa.string()),
            ("probabilities", pa.string()),
            ("shadow", pa.bool_()),
        ]
    )


class PredictionLog:
    """Non-blocking, bounded writer of prediction records to date-partitioned Parquet."""

    def __init__(
        self,
        folder: str | Path,
        *,
        max_rows_per_file: int = 10_000,
        max_seconds_per_file: float = 60.0,
        queue_size: int = 100_000,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        if max_rows_per_file < 1 or queue_size < 1:
            raise ValueError("max_rows_per_file and queue_size must be at least 1")
        if not max_seconds_per_file > 0:
            raise ValueError("max_seconds_per_file must be positive")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_rows = max_rows_per_file
        self.max_seconds = max_seconds_per_file
        self.queue_size = queue_size
        self._on_drop = on_drop
        self._buffer: list[PredictionRecord] = []
        self._oldest = math.inf  # monotonic arrival time of the oldest buffered record
        self._accepted = 0  # records ever accepted; _done counts those written or lost
        self._done = 0
        self._flush_to = 0  # write everything accepted up to here, regardless of age/size
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side

    def log(self, records: Sequence[PredictionRecord]) -> None:
        """Queue records for writing; never blocks on disk. What does not fit (or comes
        after close) is dropped and counted through on_drop."""
        if not records:
            return
        with self._cond:
            room = 0 if self._closing else self.queue_size - len(self._buffer)
            take = records[: max(room, 0)]
            if take:
                was_empty = not self._buffer
                if was_empty:
                    self._oldest = time.monotonic()
                self._buffer.extend(take)
                self._accepted += len(take)
                # Wake the writer only when it has something new to do: start timing the
                # part's age (it waited without a timeout on an empty buffer) or write a
                # full part. Waking it on every request costs the request path a switch.
                if was_empty or len(self._buffer) >= self.max_rows:
                    self._cond.notify()
        self._dropped(len(records) - len(take))

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record logged before this call is on disk (or lost to a write
        error, counted as dropped). False if `timeout` seconds passed first."""
        with self._cond:
            target = self._accepted
            self._flush_to = max(self._flush_to, target)
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self._done >= target or not self._thread.is_alive(), timeout
            )

    def close(self, timeout: float | None = None) -> None:
        """Write what is buffered and stop the writer; later records are dropped."""
        with self._cond:
            self._closing = True
            self._flush_to = self._accepted
            self._cond.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer thread

    def _due(self) -> bool:
        if not self._buffer:
            return False
        return (
            len(self._buffer) >= self.max_rows
            or self._done < self._flush_to
            or time.monotonic() - self._oldest >= self.max_seconds
        )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._closing and not self._buffer:
                        return
                    wait = None if not self._buffer else self._oldest + self.max_seconds
                    self._cond.wait(None if wait is None else max(wait - time.monotonic(), 0))
                batch = self._buffer[: self.max_rows]
                del self._buffer[: self.max_rows]
                # The rest arrived later than the batch; its own age is not tracked per
                # record, so it starts a fresh window (a part waits at most twice as long).
                self._oldest = time.monotonic() if self._buffer else math.inf
            try:
                self._write(batch)
            except Exception:  # disk full, permissions: lose these records, keep serving
                logger.exception("prediction log: could not write %d records", len(batch))
                self._dropped(len(batch))
            with self._cond:
                self._done += len(batch)
                self._cond.notify_all()

    def _write(self, batch: list[PredictionRecord]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_date: dict[str, list[PredictionRecord]] = {}
        for r in batch:
            by_date.setdefault(r.ts.strftime("%Y-%m-%d"), []).append(r)
        schema = arrow_schema()
        for day, records in by_date.items():
            columns = {c: [getattr(r, c) for r in records] for c in COLUMNS}
            table = pa.Table.from_pydict(columns, schema=schema)
            name = f"part-{records[0].ts.strftime('%H%M%S%f')}-{uuid.uuid4().hex[:8]}.parquet"
            with atomic_path(self.folder / f"date={day}" / name) as tmp:
                pq.write_table(table, tmp)

    def _dropped(self, n: int) -> None:
        if n > 0 and self._on_drop is not None:
            try:
                self._on_drop(n)
            except Exception:  # a metrics hook must not break logging
                logger.exception("prediction log: on_drop failed")


def prediction_log_parts(folder: str | Path) -> list[Path]:
    """The complete part files under `folder` (temporary files are never matched)."""
    return sorted(Path(folder).glob(PART_GLOB))


def read_prediction_log(
    folder: str | Path, *, columns: Iterable[str] | None = None
) -> pd.DataFrame:
    """Every logged record under `folder`, sorted by ts (then request, row), as a DataFrame
    with the record's columns; empty (same columns) when nothing was logged yet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(folder)
    if not root.is_dir():
        raise KubeloopError(f"prediction log: folder not found: {root} (serve.prediction_log)")
    wanted = list(columns) if columns is not None else COLUMNS
    unknown = [c for c in wanted if c not in COLUMNS]
    if unknown:
        raise KubeloopError(f"prediction log: unknown column(s) {unknown}; columns: {COLUMNS}")
    schema = arrow_schema()
    tables = [pq.read_table(p, columns=wanted, schema=schema) for p in prediction_log_parts(root)]
    table = pa.concat_tables(tables) if tables else schema.empty_table().select(wanted)
    df = table.to_pandas()
    order = [c for c in ("ts", "request_id", "row") if c in wanted]
    if order:
        df = df.sort_values(order, kind="stable", ignore_index=True)
    return df
