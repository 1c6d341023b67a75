"""Benchmark: the gateway vs a plain one-model BentoML service, and adaptive batching on vs off.

All servers are real `bentoml serve` processes on 127.0.0.1 serving the same registered model
(a small binary model trained here, two versions so the gateway has a stable and a canary);
one load generator (aiohttp, closed loop: C clients, each sending its next request when the
previous one answered) measures every server in the same run, one after another.

(a) plain `ModelVariant` (adaptive batching on) vs the gateway in-process (stable + canary at
    --canary-weight %, metrics, prediction log) vs the gateway in remote mode (two variant
    services behind it): p50 / p99 latency at --latency-clients and throughput at
    --throughput-clients, with ratios against the plain service;
(b) plain `ModelVariant` with adaptive batching on (max_batch_size 64) vs off
    (``--arg adaptive_batching=false``: one model call per request) at 64 clients.

    .venv/bin/python tests/benchmarks/bench_serving.py --seconds 10

The load generator shares the machine's cores with the servers, so absolute figures are a
floor; the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `tests.*` as modules of the repo when run as a script

from tests.serving_env import (  # noqa: E402
    admin,
    free_port,
    gateway_cmd,
    register_two_versions,
    serve_env,
    served,
    variant_cmd,
    write_spec,
)

ROW = {"x": 0.3, "plan": "pro"}


def variant(port: int, tag: str, batching: bool = True) -> list[str]:
    return variant_cmd(port, tag, "max_batch_size=64", f"adaptive_batching={str(batching).lower()}")


@dataclass
class Load:
    clients: int
    requests: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=1000)[int(q * 1000) - 1] * 1000


async def _drive(url: str, body: dict[str, object], clients: int, seconds: float) -> Load:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=body) as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:  # counted, not fatal to the measurement
                ok = False
            if not ok:
                failures += 1
                continue
            latencies.append(time.perf_counter() - t0)

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        # Warm-up: connections, the batching dispatcher's latency model, lazy imports.
        warm_until = time.perf_counter() + min(2.0, seconds / 3)
        while time.perf_counter() < warm_until:
            async with session.post(url, json=body) as resp:
                await resp.read()
        started = time.perf_counter()
        stop_at = started + seconds
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Load(clients, len(latencies), elapsed, latencies, failures)


def drive(url: str, body: dict[str, object], clients: int, seconds: float) -> Load:
    return asyncio.run(_drive(url, body, clients, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load per measurement")
    parser.add_argument("--latency-clients", type=int, default=8)
    parser.add_argument("--throughput-clients", type=int, default=64)
    parser.add_argument("--canary-weight", type=int, default=10, help="percent to the canary")
    parser.add_argument("--skip-remote", action="store_true", help="(a) without remote mode")
    parser.add_argument("--parts", default="ab", help="which comparisons to run: a, b or ab")
    parser.add_argument(
        "--hidden-units",
        default="8",
        help="the model's hidden layers, e.g. 1024,1024,1024 for a costlier model call",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kubeloop-bench-serving-"))
    try:
        os.environ["BENTOML_HOME"] = str(work / "bentoml")
        hidden = [int(u) for u in args.hidden_units.split(",")]
        stable, canary = register_two_versions(work / "models", hidden_units=hidden)
        print(f"model: binary MLP, 2 features, hidden layers {hidden}")
        env = serve_env(str(work / "bentoml"))
        spec = write_spec(work / "local")
        if "a" in args.parts:
            part_a(args, work, env, spec, stable, canary)
        if "b" in args.parts:
            part_b(args, work, env, stable)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def part_a(
    args: argparse.Namespace, work: Path, env: dict[str, str], spec: Path, stable: str, canary: str
) -> None:
    print(
        f"(a) gateway vs plain service ({args.latency_clients} clients for latency, "
        f"{args.throughput_clients} for throughput, {args.seconds:.0f} s each)"
    )
    rows: dict[str, tuple[Load, Load]] = {}

    def measure(name: str, url: str, body: dict[str, object]) -> None:
        lat = drive(url, body, args.latency_clients, args.seconds)
        thr = drive(url, body, args.throughput_clients, args.seconds)
        rows[name] = (lat, thr)
        print(
            f"  {name:<28} p50 {lat.pct(0.5):7.2f} ms  p99 {lat.pct(0.99):7.2f} ms  "
            f"{thr.rps:8.0f} req/s  (failures {lat.failures + thr.failures})",
            flush=True,
        )

    def gateway(name: str, spec_path: Path) -> None:
        port = free_port()
        cmd = gateway_cmd(spec_path, port, "--stable", stable, "--canary", canary)
        with served(cmd, port, env, work / "gateway.log") as base:
            weights = {"canary": args.canary_weight, "phase": "progressing"}
            admin(base, "POST", "weights", weights).raise_for_status()
            measure(name, f"{base}/predict", {"features": ROW})

    port = free_port()
    with served(variant(port, stable), port, env, work / "plain.log") as base:
        measure("plain ModelVariant", f"{base}/predict", {"rows": [ROW]})
    gateway(f"gateway in-process ({args.canary_weight}%)", spec)
    if not args.skip_remote:
        sp, cp = free_port(), free_port()
        with (
            served(variant(sp, stable), sp, env, work / "stable.log") as s_url,
            served(variant(cp, canary), cp, env, work / "canary.log") as c_url,
        ):
            remote = write_spec(work / "remote", stable_url=s_url, canary_url=c_url)
            gateway(f"gateway remote ({args.canary_weight}%)", remote)

    plain_lat, plain_thr = rows["plain ModelVariant"]
    for name, (lat, thr) in rows.items():
        if name.startswith("gateway"):
            print(
                f"  {name} / plain: p50 {lat.pct(0.5) / plain_lat.pct(0.5):.2f}x  "
                f"p99 {lat.pct(0.99) / plain_lat.pct(0.99):.2f}x  "
                f"throughput {thr.rps / plain_thr.rps:.2f}x"
            )


def part_b(args: argparse.Namespace, work: Path, env: dict[str, str], stable: str) -> None:
    clients = args.throughput_clients
    print(f"(b) adaptive batching on (max_batch_size 64) vs off at {clients} clients")
    result: dict[bool, Load] = {}
    for batching in (True, False):
        port = free_port()
        log = work / f"b-{batching}.log"
        with served(variant(port, stable, batching), port, env, log) as base:
            load = drive(f"{base}/predict", {"rows": [ROW]}, clients, args.seconds)
        result[batching] = load
        print(
            f"  batching {'on ' if batching else 'off'} {load.rps:8.0f} req/s  p50 "
            f"{load.pct(0.5):7.2f} ms  p99 {load.pct(0.99):7.2f} ms  (failures {load.failures})"
        )
    print(f"  batching on / off: throughput {result[True].rps / result[False].rps:.2f}x")


if __name__ == "__main__":
    main()
