"""PredictionLog: background Parquet writer with rotation, drop-on-full and a reader."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kubeloop.components.core.errors import KubeloopError
from kubeloop.serving.prediction_log import (
    COLUMNS,
    PredictionLog,
    PredictionRecord,
    prediction_log_parts,
    read_prediction_log,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
HOUR = 3600.0  # a file age that never triggers during a test


def records(n: int, *, start: int = 0, ts: datetime = T0) -> list[PredictionRecord]:
    return [
        PredictionRecord(
            ts=ts + timedelta(microseconds=i),
            request_id=f"req-{i // 3}",
            row=i % 3,
            variant="canary" if i % 2 else "stable",
            model="churn:v1",
            entity_id=None if i % 5 == 0 else f"C{i:04d}",
            features=json.dumps({"x": i * 0.5, "plan": "pro"}),
            prediction=json.dumps("yes" if i % 2 else "no"),
            probabilities=None if i % 7 == 0 else json.dumps({"no": 0.25, "yes": 0.75}),
            shadow=i % 4 == 0,
        )
        for i in range(start, start + n)
    ]


def part_rows(folder: Path) -> list[int]:
    return sorted(pq.read_metadata(p).num_rows for p in prediction_log_parts(folder))


def test_records_round_trip(tmp_path: Path) -> None:
    sent = records(23)
    with PredictionLog(tmp_path) as log:
        log.log(sent[:10])
        log.log(sent[10:])
    df = read_prediction_log(tmp_path)
    assert list(df.columns) == COLUMNS
    got = [PredictionRecord(**r) for r in _python_rows(df)]
    assert got == sent


def _python_rows(df: Any) -> list[dict[str, Any]]:
    out = []
    for r in df.to_dict("records"):
        r["ts"] = r["ts"].to_pydatetime()
        r["row"] = int(r["row"])
        r["shadow"] = bool(r["shadow"])
        out.append(r)
    return out


def test_rotation_by_rows(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_rows_per_file=10, max_seconds_per_file=HOUR)
    log.log(records(25))
    assert log.flush(timeout=30)
    assert part_rows(tmp_path) == [5, 10, 10]
    log.log(records(10, start=25))  # exactly a full part: written without a flush
    _wait_for(lambda: len(prediction_log_parts(tmp_path)) == 4)
    assert part_rows(tmp_path) == [5, 10, 10, 10]
    log.close()
    assert len(read_prediction_log(tmp_path)) == 35


def test_below_the_limits_nothing_is_written_until_flush(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, max_rows_per_file=100, max_seconds_per_file=HOUR)
    log.log(records(3))
    assert prediction_log_parts(tmp_path) == []
    assert log.flush(timeout=30)
    assert part_rows(tmp_path) == [3]
    log.close()


def test_rotation_by_time(tmp_path: Path) -> None:
    """A part is written once its oldest record is max_seconds_per_file old, without any
    flush or close (polled, no timing asserted)."""
    log = PredictionLog(tmp_path, max_rows_per_file=1000, max_seconds_per_file=0.2)
    log.log(records(4))
    _wait_for(lambda: prediction_log_parts(tmp_path) != [])
    log.log(records(2, start=4))
    _wait_for(lambda: len(prediction_log_parts(tmp_path)) == 2)
    assert part_rows(tmp_path) == [2, 4]
    log.close()


def test_parts_are_partitioned_by_day_and_named_by_first_record(tmp_path: Path) -> None:
    day2 = T0 + timedelta(days=1)
    with PredictionLog(tmp_path) as log:
        log.log(records(2) + records(3, start=2, ts=day2))
    parts = prediction_log_parts(tmp_path)
    assert [p.parent.name for p in parts] == ["date=2026-03-01", "date=2026-03-02"]
    assert parts[0].name.startswith("part-120000123456-")
    assert part_rows(tmp_path) == [2, 3]


def test_full_queue_drops_counts_and_never_blocks(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = PredictionLog(tmp_path, queue_size=5, max_seconds_per_file=HOUR, on_drop=dropped.append)
    log.log(records(3))
    log.log(records(4, start=3))  # 2 fit, 2 dropped
    log.log(records(1, start=7))  # full: dropped
    assert dropped == [2, 1]
    assert log.flush(timeout=30)
    df = read_prediction_log(tmp_path)
    assert list(df["request_id"] + "/" + df["row"].astype(str)) == [
        "req-0/0", "req-0/1", "req-0/2", "req-1/0", "req-1/1",
    ]  # fmt: skip
    log.log(records(5, start=10))  # room again once written
    log.close()
    assert dropped == [2, 1]
    assert len(read_prediction_log(tmp_path)) == 10


def test_close_flushes_and_later_records_are_dropped(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = PredictionLog(tmp_path, max_seconds_per_file=HOUR, on_drop=dropped.append)
    log.log(records(7))
    log.close()
    assert len(read_prediction_log(tmp_path)) == 7
    log.log(records(2))
    assert dropped == [2]
    log.close()  # twice is fine


def test_failed_write_leaves_no_file_and_counts_the_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that dies half-way (disk full) leaves nothing readers could pick up."""
    real_write = pq.write_table
    fail = threading.Event()
    fail.set()

    def half_write(table: Any, where: Any, **kwargs: Any) -> None:
        if fail.is_set():
            Path(where).write_bytes(b"PAR1 half")
            raise OSError("No space left on device")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", half_write)
    dropped: list[int] = []
    log = PredictionLog(tmp_path, max_seconds_per_file=HOUR, on_drop=dropped.append)
    log.log(records(4))
    assert log.flush(timeout=30)
    assert dropped == [4]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    fail.clear()
    log.log(records(3))
    log.close()
    assert len(read_prediction_log(tmp_path)) == 3


def test_readers_never_see_partial_files(tmp_path: Path) -> None:
    """Read the log over and over while the writer produces many small parts."""
    log = PredictionLog(tmp_path, max_rows_per_file=7, max_seconds_per_file=HOUR)
    done = threading.Event()
    errors: list[BaseException] = []
    counts: list[int] = []

    def reader() -> None:
        while not done.is_set():
            try:
                counts.append(len(read_prediction_log(tmp_path)))
            except BaseException as err:  # reported below
                errors.append(err)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(60):
        log.log(records(7, start=i * 7))
    log.close()
    done.set()
    t.join()
    assert errors == []
    assert counts == sorted(counts) and all(c % 7 == 0 for c in counts)
    assert len(read_prediction_log(tmp_path)) == 420


def test_reader_on_empty_and_missing_folders(tmp_path: Path) -> None:
    PredictionLog(tmp_path / "log").close()
    df = read_prediction_log(tmp_path / "log")
    assert df.empty and list(df.columns) == COLUMNS
    with pytest.raises(KubeloopError, match="folder not found"):
        read_prediction_log(tmp_path / "nope")
    with pytest.raises(KubeloopError, match=r"unknown column\(s\) \['label'\]"):
        read_prediction_log(tmp_path / "log", columns=["ts", "label"])


def test_reader_sorts_by_time_across_parts(tmp_path: Path) -> None:
    with PredictionLog(tmp_path) as log:
        log.log(records(3, ts=T0 + timedelta(seconds=5)))
        assert log.flush(timeout=30)
        log.log(records(3, start=3, ts=T0))
    df = read_prediction_log(tmp_path, columns=["ts", "request_id", "row"])
    assert list(df.columns) == ["ts", "request_id", "row"]
    assert df["ts"].is_monotonic_increasing
    assert list(df["request_id"])[:3] == ["req-1"] * 3


def _wait_for(condition: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
