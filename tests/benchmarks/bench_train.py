"""Benchmark: kubeloop's training loop vs a bare PyTorch loop, same model, data and batches.

(a) `train.task.run` (throughput from TrainResult.samples_per_s: the shuffle and the
    optimizer steps; validation, checkpoints and TensorBoard are outside that timer, so
    the end-to-end rate over the whole run is printed too);
(b) a bare loop written here: plain tensors, Adam, per-batch index slicing, no validation.
Both train the same TabularMLP on the same churn-like synthetic rows with the same batch
size and epochs. On CUDA the bare loop also runs in fp32 and in bf16 autocast.

    .venv/bin/python tests/benchmarks/bench_train.py --rows 100000 --epochs 3 --device cpu

On a shared 2-core machine, torch's default 2 OpenMP threads collapse (10-50x slower) when
another process competes for the cores; `--threads 1` gives stable figures and, for an MLP
this size, the same throughput. Variants are interleaved and the best of --repeats is used.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

N_NUMERIC = 8
CARDINALITIES = (3, 5, 12, 40)  # 4 categorical columns (vocabulary sizes)


def make_data(rows: int, seed: int) -> Any:
    """Churn-like rows: 8 numeric, 4 integer-coded categoricals, a ~25% positive label."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    num = rng.normal(size=(rows, N_NUMERIC)).astype(np.float32)
    cats = np.stack([rng.integers(0, c, size=rows) for c in CARDINALITIES], axis=1)
    logit = num[:, 0] - 0.8 * num[:, 1] + 0.5 * num[:, 2] * num[:, 3] + (cats[:, 0] == 2) - 1.2
    y = (logit + rng.logistic(size=rows) > 0).astype(np.int64)
    df = pd.DataFrame(num, columns=[f"n{i}" for i in range(N_NUMERIC)])
    for j in range(len(CARDINALITIES)):
        df[f"c{j}"] = cats[:, j]
    df["customer_id"] = np.arange(rows)
    df["event_ts"] = pd.Timestamp("2024-01-01")
    df["churned"] = y
    return df


def bare_loop(
    df: Any,
    *,
    epochs: int,
    batch_size: int,
    hidden: list[int],
    dropout: float,
    lr: float,
    device: str,
    precision: str,
    seed: int,
) -> dict[str, float]:
    """What a careful engineer writes by hand: tensors on the device, randperm, Adam."""
    import contextlib

    import torch

    from kubeloop.components.train.model import TabularMLP, default_embedding_dim

    torch.manual_seed(seed)
    dev = torch.device(device)
    x_num = torch.tensor(df[[f"n{i}" for i in range(N_NUMERIC)]].to_numpy(), device=dev)
    # +1: index 0 is "unknown", as in kubeloop's encoder, so the tables are the same size
    x_cat = torch.tensor(df[[f"c{j}" for j in range(len(CARDINALITIES))]].to_numpy() + 1)
    x_cat = x_cat.to(dev)
    y = torch.tensor(df["churned"].to_numpy(), dtype=torch.float32, device=dev)
    x_num = (x_num - x_num.mean(0)) / x_num.std(0)
    cards = [c + 1 for c in CARDINALITIES]
    model = TabularMLP(
        N_NUMERIC, cards, [default_embedding_dim(c) for c in cards], hidden, 1, dropout
    ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    autocast = (
        (lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16))
        if precision == "bf16"
        else contextlib.nullcontext
    )
    n, steps = len(y), 0
    model.train()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, device=dev)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            with autocast():
                loss = loss_fn(model(x_num[idx], x_cat[idx])[:, 0].float(), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    last = float(loss.item())  # syncs the device
    seconds = time.perf_counter() - t0
    return {
        "samples_per_s": n * epochs / seconds,
        "step_ms": 1000 * seconds / steps,
        "seconds": seconds,
        "last_loss": last,
    }


def kubeloop_loop(
    train_path: str,
    val_path: str,
    workdir: Path,
    *,
    epochs: int,
    batch_size: int,
    device: str,
    precision: str,
) -> dict[str, float]:
    from kubeloop.components.core.spec import parse_spec
    from kubeloop.components.train.task import run

    spec = parse_spec(
        {
            "name": "bench",
            "workdir": str(workdir),
            "data": {
                "source": train_path,
                "label": "churned",
                "task": "binary",
                "entity": "customer_id",
                "timestamp": "event_ts",
                "categorical": [f"c{j}" for j in range(len(CARDINALITIES))],
            },
            "train": {
                "epochs": epochs,
                "batch_size": batch_size,
                "patience": epochs + 1,  # never stop early: same work as the bare loop
                "device": device,
                "precision": precision,
            },
        }
    )
    res = run(spec, train_path, val_path, str(workdir / f"model_{precision}"))
    steps = epochs * -(-len_rows(train_path) // batch_size)
    train_s = len_rows(train_path) * epochs / res.samples_per_s
    return {
        "samples_per_s": res.samples_per_s,
        "step_ms": 1000 * train_s / steps,
        "seconds": res.seconds,
        "end_to_end_samples_per_s": len_rows(train_path) * epochs / res.seconds,
        "val_auc": res.val_metric,
    }


_ROWS: dict[str, int] = {}


def len_rows(path: str) -> int:
    if path not in _ROWS:
        import pyarrow.parquet as pq

        _ROWS[path] = pq.ParquetFile(path).metadata.num_rows
    return _ROWS[path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per variant")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)"
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.table import Table

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    precisions = ["fp32", "bf16"] if device == "cuda" else ["fp32"]
    hidden, dropout, lr = [128, 64], 0.1, 1e-3  # spec.train defaults: the same network

    rows: list[tuple[str, str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        train_p, val_p = str(work / "train.parquet"), str(work / "val.parquet")
        make_data(args.rows, 0).to_parquet(train_p)
        make_data(max(1000, args.rows // 10), 1).to_parquet(val_p)
        train_df = make_data(args.rows, 0)
        for precision in precisions:
            best_k: dict[str, float] | None = None
            best_b: dict[str, float] | None = None
            seen_k: list[float] = []
            seen_b: list[float] = []
            for _ in range(args.repeats):  # interleaved so drift hits both alike
                k = kubeloop_loop(
                    train_p,
                    val_p,
                    work,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    device=device,
                    precision=precision,
                )
                b = bare_loop(
                    train_df,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    hidden=hidden,
                    dropout=dropout,
                    lr=lr,
                    device=device,
                    precision=precision,
                    seed=42,
                )
                seen_k.append(k["samples_per_s"])
                seen_b.append(b["samples_per_s"])
                if best_k is None or k["samples_per_s"] > best_k["samples_per_s"]:
                    best_k = k
                if best_b is None or b["samples_per_s"] > best_b["samples_per_s"]:
                    best_b = b
            assert best_k is not None and best_b is not None
            best_k["median_samples_per_s"] = statistics.median(seen_k)
            best_b["median_samples_per_s"] = statistics.median(seen_b)
            rows.append(("kubeloop train.task.run", precision, best_k))
            rows.append(("bare PyTorch loop", precision, best_b))

    console = Console(width=150)
    title = (
        f"training throughput on {device} ({torch.get_num_threads()} threads): "
        f"{args.rows:,} rows, {args.epochs} epochs, batch {args.batch_size}, "
        f"best of {args.repeats}"
    )
    table = Table(title=title)
    cols = (
        "loop",
        "precision",
        "samples/s (best)",
        "samples/s (median)",
        "step ms (best)",
        "run seconds",
        "end-to-end samples/s",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("loop", "precision") else "right")
    for name, precision, r in rows:
        e2e = r.get("end_to_end_samples_per_s")
        table.add_row(
            name,
            precision,
            f"{r['samples_per_s']:,.0f}",
            f"{r['median_samples_per_s']:,.0f}",
            f"{r['step_ms']:.3f}",
            f"{r['seconds']:.2f}",
            f"{e2e:,.0f}" if e2e else "-",
        )
    console.print(table)
    for precision in precisions:
        k = next(r for n, p, r in rows if p == precision and n.startswith("kubeloop"))
        b = next(r for n, p, r in rows if p == precision and n.startswith("bare"))
        ratio = k["samples_per_s"] / b["samples_per_s"]
        ratio_med = k["median_samples_per_s"] / b["median_samples_per_s"]
        verdict = "OK" if ratio >= 0.9 else "BELOW TARGET"
        console.print(
            f"{precision}: kubeloop / bare = {ratio:.2f}x best, {ratio_med:.2f}x median "
            f"(target >= 0.9x) {verdict}; kubeloop val roc_auc {k['val_auc']:.3f}"
        )
    if len(precisions) == 2:
        for loop in ("kubeloop", "bare"):
            f = next(r for n, p, r in rows if p == "fp32" and n.startswith(loop))
            h = next(r for n, p, r in rows if p == "bf16" and n.startswith(loop))
            console.print(
                f"{loop}: bf16 vs fp32 step time {h['step_ms']:.3f} vs {f['step_ms']:.3f} ms "
                f"({f['step_ms'] / h['step_ms']:.2f}x speed-up)"
            )


if __name__ == "__main__":
    main()
