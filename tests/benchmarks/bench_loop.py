"""Benchmark: the closed loop on this machine — `kubeloop demo` from the drift onset to the
promoted retrained model (target: at most 10 minutes), split into its legs.

Each run is a whole `kubeloop demo` (fresh folder, free ports, real Prometheus, Alertmanager,
gateway, trigger, controller and kfp.local runs). Printed per run and as the median over runs:
onset → drift detected → alert firing (the rule's `for: 2m` is in here) → retraining started
→ gate verdict → canary promoted, and the ratio of the total to the 10-minute target.

    .venv/bin/python tests/benchmarks/bench_loop.py --runs 3 [--rows 10000 --rate 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.*` of the repo
from tests.prom import free_port

TARGET_S = 600.0
LEGS = (
    ("drift detected", "drift detected"),
    ("alert firing", "alert ModelDriftDetected firing"),
    ("retraining started", "retraining run"),
    ("gate verdict", "evaluation gate"),
    ("canary started", "canary rollout"),
    ("promoted", "canary promoted"),
)


def run_once(rows: int, rate: float, steady: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ports = [str(free_port()) for _ in range(4)]
        cmd = [
            sys.executable, "-c", "from kubeloop.pipelines.cli.main import app; app()",
            "demo", "--out", str(Path(tmp) / "demo"), "--rows", str(rows),
            "--rate", str(rate), "--steady", str(steady), "--json",
            "--gateway-port", ports[0], "--prometheus-port", ports[1],
            "--alertmanager-port", ports[2], "--trigger-port", ports[3],
        ]  # fmt: skip
        started = time.monotonic()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        if not done.stdout.strip():
            raise SystemExit(f"kubeloop demo exited {done.returncode}:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        result["wall_s"] = wall
        return result


def legs(result: dict[str, Any]) -> dict[str, float | None]:
    """Seconds from the drift onset to the first event of each leg after it."""
    onset = result["onset_at"]
    out: dict[str, float | None] = {}
    for name, prefix in LEGS:
        times = [e["at"] for e in result["events"] if e["what"].startswith(prefix)]
        after = [t for t in times if onset is not None and t >= onset]
        out[name] = (after[0] - onset) if after else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--steady", type=float, default=45.0)
    args = parser.parse_args()
    header = ["run", "outcome", *(name for name, _ in LEGS), "whole demo"]
    print(" | ".join(header))
    totals: list[float] = []
    for i in range(args.runs):
        result = run_once(args.rows, args.rate, args.steady)
        times = legs(result)
        cells = ["-" if t is None else f"{t:.0f} s" for t in times.values()]
        print(" | ".join([str(i + 1), result["outcome"], *cells, f"{result['wall_s']:.0f} s"]))
        if result["outcome"] == "promoted" and result["seconds_to_promotion"] is not None:
            totals.append(result["seconds_to_promotion"])
    print(f"promoted in {len(totals)} of {args.runs} runs")
    if totals:
        median = statistics.median(totals)
        print(
            f"drift onset -> promoted: median {median:.0f} s "
            f"({median / 60:.1f} min; {median / TARGET_S:.2f}x the 10-minute target), "
            f"range {min(totals):.0f}-{max(totals):.0f} s"
        )


if __name__ == "__main__":
    main()
