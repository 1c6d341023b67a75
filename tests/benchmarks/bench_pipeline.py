"""Benchmark: the whole training pipeline through kfp.local on the churn demo data.

Reports wall time, the time covered by task bodies (merged intervals, so parallel trials
are not double counted) and the share spent outside them: process start-up, imports, KFP
executor and artifact handling, orchestration.

    .venv/bin/python tests/benchmarks/bench_pipeline.py --rows 100000 --trials 8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--tune-epochs", type=int, default=5)
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from kubeloop.components.core.spec import load_spec
    from kubeloop.components.datasets.churn import write_demo
    from kubeloop.pipelines.local import run_local

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENTOML_HOME"] = str(Path(tmp) / "bentoml")
        paths = write_demo(Path(tmp) / "demo", rows=args.rows, seed=0)
        spec_path = Path(paths["spec"])
        raw = yaml.safe_load(spec_path.read_text())
        raw["train"] = {**raw.get("train", {}), "epochs": args.epochs}
        raw["tune"] = {**raw.get("tune", {}), "trials": args.trials, "epochs": args.tune_epochs}
        spec_path.write_text(yaml.safe_dump(raw))
        console = Console(file=sys.stdout)  # bound now: run_local redirects stdout
        summary = run_local(load_spec(spec_path), console=console)
        from kubeloop.components.tracking.steps import read_events

        events = read_events(load_spec(spec_path).workdir, summary.run_id)

    table = Table(title=f"pipeline on {args.rows:,} rows, {args.trials} trials")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for ev in events:
        table.add_row(ev["step"], f"{ev['end'] - ev['start']:.1f}")
    console.print(table)
    if summary.primary_metric:
        console.print(
            f"{summary.primary_metric} {summary.metrics[summary.primary_metric]:.4f}; "
            f"gate passed: {summary.gate_passed}; model {summary.model_tag}"
        )
    outside = summary.seconds - summary.task_seconds
    console.print(
        f"status {summary.status}; wall {summary.seconds:.1f} s; task bodies "
        f"{summary.task_seconds:.1f} s; outside task bodies {outside:.1f} s = "
        f"{outside / summary.seconds:.1%} of wall (target <= 15%)"
    )


if __name__ == "__main__":
    main()
