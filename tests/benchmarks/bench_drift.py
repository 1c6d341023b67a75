"""Benchmark: live drift checks (kubeloop.serving.drift) — false alarms, power, CPU time.

Synthetic data (tests/serving/drift/synthetic.py): --numeric standard-normal features and
--categorical features with shares 50/30/15/5 %, a --reference-rows reference sample and
--window-row windows.

* false-alarm rate per check: --windows fresh stationary windows against each of
  --references independently drawn reference samples (each calibrated on its own), with a
  95 % Clopper–Pearson interval; target <= --false-alarm-rate;
* power: --power-windows windows with x0 shifted by --shift standard deviations (target
  >= 0.9), and with c0's shares moved to 42/30/20/8 %;
* CPU time per check (process time, one window of --window rows x all features, already a
  frame) and per check from request dicts (what the monitor does); calibration time;
* the same windows through Bonferroni on the same p-values (α / tests, uncalibrated), and
  through Evidently's default data drift preset (``DataDriftPreset``: per-column tests picked
  by Evidently, "any column drifted" and its dataset-drift verdict = half the columns) on the
  first --evidently-windows windows of each kind (first reference; ~2.7 s CPU a check for
  50 columns). Evidently is not a kubeloop dependency and is skipped when absent; to get
  that column without touching the venv's versions, install it beside the venv, pinned to
  them, and drop the packages the venv already has (they would shadow its own):

    .venv/bin/pip freeze --exclude-editable > /tmp/pins.txt
    .venv/bin/pip install --target /tmp/evd-lib -c /tmp/pins.txt evidently
    # then delete from /tmp/evd-lib every distribution listed in /tmp/pins.txt
    PYTHONPATH=/tmp/evd-lib DO_NOT_TRACK=1 .venv/bin/python tests/benchmarks/bench_drift.py \
        --windows 1000 --references 1 --evidently-windows 60

    .venv/bin/python tests/benchmarks/bench_drift.py
    .venv/bin/python tests/benchmarks/bench_drift.py --windows 300 --references 1  # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kubeloop.serving.drift import DriftDetector, DriftReport, DriftSettings  # noqa: E402
from kubeloop.serving.schemas import Prediction  # noqa: E402
from tests.serving.drift import synthetic  # noqa: E402


@dataclass
class Tally:
    """Alarm counts of one method on one kind of window."""

    alarms: int = 0
    windows: int = 0
    dataset_alarms: int = 0  # Evidently's dataset-drift verdict

    def add(self, alarm: bool, dataset: bool = False) -> None:
        self.alarms += alarm
        self.dataset_alarms += dataset
        self.windows += 1

    @property
    def rate(self) -> float:
        return self.alarms / self.windows if self.windows else float("nan")

    def interval(self) -> tuple[float, float]:
        res = stats.binomtest(self.alarms, self.windows).proportion_ci(0.95)
        return res.low, res.high


@dataclass
class Results:
    fa: dict[str, Tally] = field(default_factory=dict)
    fa_per_reference: list[float] = field(default_factory=list)
    power_shift: dict[str, Tally] = field(default_factory=dict)
    power_category: dict[str, Tally] = field(default_factory=dict)
    check_ms: list[float] = field(default_factory=list)
    check_dicts_ms: list[float] = field(default_factory=list)
    calibration_s: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    bonferroni: float = 0.0
    evidently_ms: list[float] = field(default_factory=list)


def bonferroni_alarm(report: DriftReport, threshold: float) -> bool:
    cols = (*report.features, *report.prediction)
    return any(c.p_value is not None and c.p_value < threshold for c in cols)


class Evidently:
    """Evidently's default data drift preset on the same windows."""

    def __init__(self, reference: pd.DataFrame, kinds: dict[str, str]) -> None:
        from evidently import DataDefinition, Dataset

        self._dataset = Dataset
        self._definition = DataDefinition(
            numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
            categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
        )
        self._reference = Dataset.from_pandas(reference, data_definition=self._definition)

    def check(self, window: pd.DataFrame) -> tuple[bool, bool]:
        """(any column drifted, dataset drift)."""
        from evidently import Report
        from evidently.presets import DataDriftPreset

        current = self._dataset.from_pandas(window, data_definition=self._definition)
        snapshot = Report([DataDriftPreset()]).run(current, self._reference)
        for metric in snapshot.dict()["metrics"]:
            if metric["metric_name"].startswith("DriftedColumnsCount"):
                value = metric["value"]
                share = metric["config"].get("drift_share", 0.5)
                return value["count"] >= 1, value["share"] >= share
        raise RuntimeError("Evidently's report has no DriftedColumnsCount metric")


def evidently_available() -> bool:
    try:
        import evidently  # noqa: F401
    except ImportError:
        return False
    return True


def run(args: argparse.Namespace) -> Results:
    kinds: Any = synthetic.kinds(args.numeric, args.categorical)
    settings = DriftSettings(
        window=args.window,
        min_rows=min(200, args.window),
        false_alarm_rate=args.false_alarm_rate,
        draws=args.draws,
    )
    use_evidently = args.evidently_windows > 0 and evidently_available()
    res = Results()
    names = ["kubeloop", "bonferroni", *(["evidently"] if use_evidently else [])]
    res.fa = {m: Tally() for m in names}
    res.power_shift = {m: Tally() for m in names}
    res.power_category = {m: Tally() for m in names}

    def frame(rng: np.random.Generator, **shift: Any) -> pd.DataFrame:
        return synthetic.frame(
            args.window, rng, numeric=args.numeric, categorical=args.categorical, **shift
        )

    for r in range(args.references):
        rng = np.random.default_rng(1000 + r)
        reference = synthetic.frame(
            args.reference_rows, rng, numeric=args.numeric, categorical=args.categorical
        )
        det = DriftDetector(reference, kinds, settings=settings, reference_key=f"bench-{r}")
        wall, cpu = time.perf_counter(), time.process_time()
        cal = det.calibrate()
        res.calibration_s.append(time.perf_counter() - wall)
        print(
            f"reference {r}: calibrated in {res.calibration_s[-1]:.2f} s wall, "
            f"{time.process_time() - cpu:.2f} s CPU ({cal.draws} draws); "
            f"p-value threshold {cal.p_threshold:.3g} (Bonferroni {cal.bonferroni_threshold:.3g})",
            flush=True,
        )
        res.thresholds.append(cal.p_threshold)
        res.bonferroni = cal.bonferroni_threshold
        evid = Evidently(reference, kinds) if use_evidently and r == 0 else None
        alarms_here = 0
        for i in range(args.windows):
            window = frame(rng)
            t = time.process_time()
            report = det.check_frame(window)
            res.check_ms.append((time.process_time() - t) * 1e3)
            alarms_here += report.drifted
            res.fa["kubeloop"].add(report.drifted)
            res.fa["bonferroni"].add(bonferroni_alarm(report, cal.bonferroni_threshold))
            if evid is not None and i < args.evidently_windows:
                t = time.process_time()
                res.fa["evidently"].add(*evid.check(window))
                res.evidently_ms.append((time.process_time() - t) * 1e3)
        res.fa_per_reference.append(alarms_here / args.windows)
        if r > 0:
            continue
        for i in range(args.power_windows):
            for tally, window in (
                (res.power_shift, frame(rng, mean_shift=args.shift)),
                (res.power_category, frame(rng, category_shift=True)),
            ):
                report = det.check_frame(window)
                tally["kubeloop"].add(report.drifted)
                tally["bonferroni"].add(bonferroni_alarm(report, cal.bonferroni_threshold))
                if evid is not None and i < args.evidently_windows:
                    tally["evidently"].add(*evid.check(window))
        # The monitor's path: request dicts + served predictions -> frame -> check.
        for _ in range(args.dict_windows):
            rows = frame(rng).to_dict("records")
            preds = [Prediction(prediction=0.0, model="m:1") for _ in rows]
            t = time.process_time()
            det.check(rows, preds)
            res.check_dicts_ms.append((time.process_time() - t) * 1e3)
    return res


def summary(args: argparse.Namespace, res: Results) -> dict[str, Any]:
    def pct(xs: list[float], q: float) -> float:
        return float(np.percentile(xs, q)) if xs else float("nan")

    out: dict[str, Any] = {
        "setup": {
            "numeric": args.numeric,
            "categorical": args.categorical,
            "reference_rows": args.reference_rows,
            "window": args.window,
            "false_alarm_rate": args.false_alarm_rate,
            "draws": args.draws,
            "references": args.references,
            "shift_sigma": args.shift,
        },
        "p_value_threshold": res.thresholds,
        "bonferroni_threshold": res.bonferroni,
        "false_alarm_rate_per_reference": res.fa_per_reference,
        "calibration_seconds": res.calibration_s,
        "check_cpu_ms": {
            "mean": float(np.mean(res.check_ms)),
            "p50": pct(res.check_ms, 50),
            "p95": pct(res.check_ms, 95),
        },
        "check_from_request_dicts_cpu_ms": {
            "mean": float(np.mean(res.check_dicts_ms)) if res.check_dicts_ms else None
        },
        "methods": {},
    }
    if res.evidently_ms:
        out["evidently_check_cpu_ms"] = float(np.mean(res.evidently_ms))
    for name in res.fa:
        fa, ps, pc = res.fa[name], res.power_shift[name], res.power_category[name]
        entry = {
            "false_alarm_rate": fa.rate,
            "false_alarm_ci95": fa.interval(),
            "stationary_windows": fa.windows,
            "power_mean_shift": ps.rate,
            "power_category_shift": pc.rate,
            "power_windows": ps.windows,
        }
        if name == "evidently":
            entry["dataset_drift_false_alarm_rate"] = fa.dataset_alarms / max(fa.windows, 1)
            entry["dataset_drift_power_mean_shift"] = ps.dataset_alarms / max(ps.windows, 1)
            entry["dataset_drift_power_category_shift"] = pc.dataset_alarms / max(pc.windows, 1)
        out["methods"][name] = entry
    return out


def print_table(out: dict[str, Any]) -> None:
    s = out["setup"]
    print(
        f"\n{s['numeric']} numeric + {s['categorical']} categorical features, reference "
        f"{s['reference_rows']} rows, windows of {s['window']} rows, target false-alarm rate "
        f"{s['false_alarm_rate']}, {s['draws']} bootstrap draws"
    )
    print(
        f"{'method':<12} {'windows':>8} {'false alarms':>13} {'95% CI':>17} "
        f"{'power ' + str(s['shift_sigma']) + 'σ':>11} {'power cat':>10}"
    )
    for name, m in out["methods"].items():
        lo, hi = m["false_alarm_ci95"]
        print(
            f"{name:<12} {m['stationary_windows']:>8} {m['false_alarm_rate']:>13.4f} "
            f"{f'[{lo:.4f}, {hi:.4f}]':>17} {m['power_mean_shift']:>11.3f} "
            f"{m['power_category_shift']:>10.3f}"
        )
        if name == "evidently":
            print(
                f"{'  dataset':<12} {'':>8} {m['dataset_drift_false_alarm_rate']:>13.4f} "
                f"{'':>17} {m['dataset_drift_power_mean_shift']:>11.3f} "
                f"{m['dataset_drift_power_category_shift']:>10.3f}"
            )
    c = out["check_cpu_ms"]
    print(
        f"\nCPU per check (frame): mean {c['mean']:.1f} ms, p50 {c['p50']:.1f}, "
        f"p95 {c['p95']:.1f} (target <= 50 ms)"
    )
    d = out["check_from_request_dicts_cpu_ms"]["mean"]
    if d is not None:
        print(f"CPU per check from request dicts + predictions: mean {d:.1f} ms")
    if "evidently_check_cpu_ms" in out:
        print(f"Evidently CPU per check: mean {out['evidently_check_cpu_ms']:.0f} ms")
    cal = ", ".join(f"{x:.2f}" for x in out["calibration_seconds"])
    print(f"calibration wall seconds per reference: {cal}")
    per_ref = ", ".join(f"{x:.4f}" for x in out["false_alarm_rate_per_reference"])
    print(f"false-alarm rate per reference sample: {per_ref}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--numeric", type=int, default=40)
    p.add_argument("--categorical", type=int, default=10)
    p.add_argument("--reference-rows", type=int, default=5000)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--false-alarm-rate", type=float, default=0.01)
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--references", type=int, default=3, help="independent reference samples")
    p.add_argument("--windows", type=int, default=1000, help="stationary windows per reference")
    p.add_argument("--power-windows", type=int, default=300)
    p.add_argument("--shift", type=float, default=0.25, help="mean shift of x0, in σ")
    p.add_argument("--dict-windows", type=int, default=30)
    p.add_argument(
        "--evidently-windows",
        type=int,
        default=100,
        help="windows of each kind (first reference) also run through Evidently (0: skip)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.evidently_windows > 0 and not evidently_available():
        print("evidently not installed (.venv/bin/pip install evidently): skipping its column")
    out = summary(args, run(args))
    print_table(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
