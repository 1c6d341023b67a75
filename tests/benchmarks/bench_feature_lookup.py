"""Benchmark: Feast online lookups on the SQLite online store, FeatureLookup vs raw Feast.

A real store is built (definitions applied, `--entities` customers with `--snapshots` rows
each, materialized); then, for batches of 1 and 100 random known ids, each iteration times
(a) `FeatureLookup.rows(ids)` (what the gateway calls: feature service, JSON-ready rows),
(b) raw Feast: `store.get_online_features(features=service, entity_rows=...).to_dict()`,
interleaved, after a warm-up. Prints p50/p99 in milliseconds and the ratio (a)/(b).

    .venv/bin/python tests/benchmarks/bench_feature_lookup.py --entities 10000 --iterations 300
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def build(root: Path, entities: int, snapshots: int) -> tuple[Any, list[str]]:
    from tests.components.test_features import churn_frame, make_spec
    from tests.serving.test_feature_lookup import build_store

    spec = make_spec(root / "work")
    df = churn_frame(customers=entities, snapshots=snapshots)
    started = time.perf_counter()
    build_store(spec, df)
    print(f"store: {entities:,} entities x {snapshots} snapshots materialized in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    return spec, sorted(df["customer_id"].unique())


def bench(spec: Any, ids: list[str], batch: int, iterations: int, seed: int) -> dict[str, Any]:
    from kubeloop.serving.feature_lookup import FeatureLookup
    from tests.components.test_features import FEATURES

    lookup = FeatureLookup(spec, FEATURES)
    store = lookup.store
    service = store.get_feature_service(spec.feature_service)
    key = spec.data.entity_column

    def ours(batch_ids: list[str]) -> Any:
        return lookup.rows(batch_ids)

    def raw(batch_ids: list[str]) -> Any:
        rows = [{key: i} for i in batch_ids]
        return store.get_online_features(features=service, entity_rows=rows).to_dict()

    rng = random.Random(seed)
    times: dict[str, list[float]] = {"FeatureLookup": [], "raw Feast": []}
    fns = {"FeatureLookup": ours, "raw Feast": raw}
    for i in range(iterations + 10):
        batch_ids = rng.sample(ids, batch)
        order = list(fns) if i % 2 else list(reversed(fns))  # alternate who goes first
        for name in order:
            started = time.perf_counter()
            fns[name](batch_ids)
            if i >= 10:  # warm-up: store connections, caches
                times[name].append(time.perf_counter() - started)
    out: dict[str, Any] = {"batch": batch}
    for name, ts in times.items():
        out[name] = {"p50": percentile(ts, 0.5) * 1e3, "p99": percentile(ts, 0.99) * 1e3,
                     "mean": statistics.fmean(ts) * 1e3}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=10_000, help="customers in the store")
    parser.add_argument("--snapshots", type=int, default=2, help="feature rows per customer")
    parser.add_argument("--iterations", type=int, default=300, help="timed lookups per size")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[1, 100], help="entity ids per lookup"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # the store builders in `tests.*` of the repo

    with tempfile.TemporaryDirectory() as tmp:
        spec, ids = build(Path(tmp), args.entities, args.snapshots)
        print(f"{'ids':>5}  {'variant':<14} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
        for batch in args.batches:
            r = bench(spec, ids, batch, args.iterations, args.seed)
            for name in ("FeatureLookup", "raw Feast"):
                m = r[name]
                print(f"{batch:>5}  {name:<14} {m['p50']:8.2f} {m['p99']:8.2f} {m['mean']:8.2f}")
            ratio = r["FeatureLookup"]["p50"] / r["raw Feast"]["p50"]
            print(f"{batch:>5}  p50 ratio FeatureLookup / raw Feast: {ratio:.2f}")


if __name__ == "__main__":
    main()
