"""Step events: what each pipeline task did, appended by the task itself.

Tasks may run concurrently (tuning trials fan out), so each one appends a single JSON line
to `{workdir}/runs/<run_id>/steps.jsonl` (one `write` on an O_APPEND file: no lock and no
read-modify-write). The runner folds the lines into the run record when the run ends.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubeloop.components.core.errors import ValidationBlocked
from kubeloop.components.core.spec import Spec

STEPS_FILE = "steps.jsonl"


def steps_path(workdir: str | Path, run_id: str) -> Path:
    return Path(workdir) / "runs" / run_id / STEPS_FILE


def append_event(path: Path, event: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(event, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_events(workdir: str | Path, run_id: str, *, starts: bool = False) -> list[dict[str, Any]]:
    """Finished-step events in the order they ended (with `starts`, the start marks too)."""
    path = steps_path(workdir, run_id)
    if not path.is_file():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if starts or e.get("status") != "started"]


@contextmanager
def record_step(spec: Spec, run_id: str, step: str) -> Iterator[Callable[..., None]]:
    """Time a task body and append its outcome; fields passed to the callback are kept.

    A failure is recorded (with the report path for a blocked validation) and re-raised,
    so KFP still sees the task fail and runs nothing downstream.
    """
    fields: dict[str, Any] = {}
    event: dict[str, Any] = {"step": step, "start": time.time(), "pid": os.getpid()}
    if run_id:  # the start mark drives the runner's progress display
        append_event(steps_path(spec.workdir, run_id), {**event, "status": "started"})
    try:
        yield fields.update
    except ValidationBlocked as err:
        event.update(status="blocked", error=str(err), report=err.report_path)
        raise
    except Exception as err:
        event.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    else:
        event["status"] = "succeeded"
    finally:
        event["end"] = time.time()
        event["fields"] = fields
        if run_id:
            append_event(steps_path(spec.workdir, run_id), event)
