"""Benchmark: the retrain trigger under an alert storm, over real HTTP (uvicorn on 127.0.0.1).

N identical Alertmanager notifications arrive with C in flight at once (what HA replicas,
retries and repeat intervals produce), then N distinct alerts within the cooldown. Prints
the reply latency (p50 / p99 / max), notifications per second, and how many runs started
(must be exactly 1). The pipeline runner only records the run: this measures the trigger.
The client runs in the same process as the server, so the HTTP figures are a floor on a
small machine; the cost of the trigger's own logic (validation + admission) is printed
apart from them.

    .venv/bin/python tests/benchmarks/bench_trigger.py --notifications 2000 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from kubeloop.serving.trigger.app import create_app
from kubeloop.serving.trigger.trigger import RetrainTrigger
from kubeloop.serving.trigger.webhook import WebhookPayload

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.*` of the repo
from tests.alertmanager import UvicornThread, free_port
from tests.trigger_fakes import RecordingRunner, alert, make_spec, payload


async def storm(url: str, bodies: list[dict[str, object]], concurrency: int) -> list[float]:
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:

        async def one(body: dict[str, object]) -> None:
            async with limit:
                start = time.perf_counter()
                reply = await client.post(url, json=body)
                latencies.append(time.perf_counter() - start)
                reply.raise_for_status()

        await asyncio.gather(*(one(b) for b in bodies))
    return latencies


def report(what: str, latencies: list[float], seconds: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print(
        f"{what:<28} {len(ms):>6} notifications  {len(ms) / seconds:8.0f}/s  "
        f"p50 {statistics.median(ms):6.1f} ms  p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        runner = RecordingRunner()
        trigger = RetrainTrigger(make_spec(Path(tmp)), runner, model_age=False)
        port = free_port()
        url = f"http://127.0.0.1:{port}/alerts"
        with UvicornThread(create_app(trigger), port):
            same = [payload(alert())] * args.notifications
            start = time.perf_counter()
            lat = asyncio.run(storm(url, same, args.concurrency))
            report("identical (1 accepted)", lat, time.perf_counter() - start)
            distinct = [
                payload(alert(fingerprint=f"{i + 1:016x}")) for i in range(args.notifications)
            ]
            start = time.perf_counter()
            lat = asyncio.run(storm(url, distinct, args.concurrency))
            report("distinct, in cooldown", lat, time.perf_counter() - start)
            trigger.wait_idle(60)
        counts = {
            s.labels["result"]: int(s.value)
            for m in trigger.registry.collect()
            if m.name == "kubeloop_retrain_notifications"
            for s in m.samples
            if s.name.endswith("_total")
        }
        print(f"results: {counts}; pipeline runs started: {len(runner.runs)}")
        assert len(runner.runs) == 1, runner.runs
        body = payload(alert())
        start = time.perf_counter()
        for _ in range(args.notifications):
            trigger.notify(WebhookPayload.model_validate(body))
        per = (time.perf_counter() - start) / args.notifications
        print(f"validation + admission alone (no HTTP): {per * 1e6:.0f} us per notification")


if __name__ == "__main__":
    main()
