"""Split: train/val/test by time, entity, label strata or at random; then check for leaks.

`auto` picks the strictest split the data allows: by time when the spec names a timestamp
(the model is tested on the future, as in production), else by entity when entities
repeat (no customer in two splits), else stratified (classification) or random.

Target-leakage rule (documented, deliberately simple), checked on the training split for
every feature: a feature leaks when

* it equals the label on >= 99.9% of the rows where both are present, or
* (classification) its values determine the label: grouping rows by the feature value,
  >= 99.9% of rows carry their group's majority label, while the feature has at most
  n/10 distinct values (an id-like column determines the label trivially, so is not flagged)
  -- numeric binary features are also flagged when one threshold separates the classes
  (ROC-AUC >= 0.999 either way); skipped when one class is >= 99% of the rows, or
* (regression) a numeric feature has |Pearson r| >= 0.999 with the label.

It needs at least 50 training rows; smaller splits are too small to tell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from kubeloop.components.core.errors import DataError, LeakageError
from kubeloop.components.core.spec import Spec

if TYPE_CHECKING:
    import pandas as pd

LEAK_SHARE = 0.999
LEAK_MIN_ROWS = 50
SPLITS = ("train", "val", "test")


class SplitResult(BaseModel):
    strategy: str
    counts: dict[str, int]
    checks: list[str]


def choose_strategy(df: pd.DataFrame, spec: Spec, task: str) -> str:
    d = spec.data
    if d.split.strategy != "auto":
        return d.split.strategy
    if d.timestamp is not None:
        return "time"
    if d.entity is not None and df[d.entity].duplicated().any():
        return "entity"
    return "random" if task == "regression" else "stratified"


def _too_few(n: int, detail: str) -> DataError:
    return DataError(f"too few rows to split ({n} rows): {detail}")


def split_frame(
    df: pd.DataFrame, spec: Spec, strategy: str, task: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    d = spec.data
    f_train, f_val, f_test = d.split.fractions
    seed = d.split.seed
    n = len(df)
    if n < 3:
        raise _too_few(n, "need at least one row per split")

    if strategy == "time":
        ts = df[d.timestamp_column]
        order = np.argsort(ts.to_numpy(), kind="stable")
        cut1, cut2 = round(f_train * n), round((f_train + f_val) * n)
        tr, va, te = np.split(order, [cut1, cut2])
        return df.iloc[np.sort(tr)], df.iloc[np.sort(va)], df.iloc[np.sort(te)]

    if strategy == "entity":
        groups = df[d.entity_column].astype(str).to_numpy()
        if len(set(groups)) < 3:
            raise _too_few(n, f"entity split needs >= 3 distinct {d.entity_column!r} values")
        # Two GroupShuffleSplits: (train+val | test), then (train | val); fractions are of
        # entities, so row shares are approximate when entities have different row counts.
        gss = GroupShuffleSplit(n_splits=1, test_size=f_test, random_state=seed)
        rest_idx, test_idx = next(gss.split(df, groups=groups))
        rest = df.iloc[rest_idx]
        gss = GroupShuffleSplit(n_splits=1, test_size=f_val / (f_train + f_val), random_state=seed)
        tr_idx, val_idx = next(gss.split(rest, groups=groups[rest_idx]))
        return rest.iloc[tr_idx], rest.iloc[val_idx], df.iloc[test_idx]

    stratify = strategy == "stratified"
    if stratify and task == "regression":
        raise DataError("data.split.strategy: 'stratified' needs a classification label")
    y = df[d.label] if stratify else None
    try:
        rest, test = train_test_split(df, test_size=f_test, random_state=seed, stratify=y)
        y_rest = rest[d.label] if stratify else None
        train, val = train_test_split(
            rest, test_size=f_val / (f_train + f_val), random_state=seed, stratify=y_rest
        )
    except ValueError as err:
        raise _too_few(n, str(err)) from None
    return train, val, test


def _target_leaks(train: pd.DataFrame, spec: Spec, task: str) -> list[str]:
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from kubeloop.components.core.schema import feature_columns

    label = spec.data.label
    leaks = []
    for col in feature_columns(train, spec):
        both = train[[col, label]].dropna()
        n = len(both)
        if n < LEAK_MIN_ROWS:
            continue
        x, y = both[col], both[label]
        numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
        same = (
            (x == y)
            if numeric and pd.api.types.is_numeric_dtype(y)
            else (x.astype(str) == y.astype(str))
        )
        if same.mean() >= LEAK_SHARE:
            leaks.append(f"{col!r} equals the label {label!r} on >= 99.9% of training rows")
            continue
        if task == "regression":
            if numeric and x.nunique() > 1 and abs(np.corrcoef(x, y)[0, 1]) >= LEAK_SHARE:
                leaks.append(f"{col!r} is almost perfectly correlated with {label!r}")
            continue
        if y.value_counts(normalize=True).iloc[0] >= 0.99:
            continue  # one class is (almost) everything: purity says nothing
        if x.nunique() <= n / 10:
            # share of rows carrying their feature value's majority label
            purity = pd.crosstab(x.astype(str), y).max(axis=1).sum() / n
            if purity >= LEAK_SHARE:
                leaks.append(f"{col!r} determines the label {label!r} on >= 99.9% of rows")
                continue
        if numeric and task == "binary" and y.nunique() == 2:
            auc = roc_auc_score(y, x)
            if max(auc, 1 - auc) >= LEAK_SHARE:
                leaks.append(
                    f"{col!r} separates the classes of {label!r} by one threshold "
                    f"(ROC-AUC {max(auc, 1 - auc):.4f})"
                )
    return leaks


def check_leakage(
    train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, spec: Spec, strategy: str
) -> list[str]:
    """Raise LeakageError/DataError on a leaky or unusable split; return the checks passed."""
    from kubeloop.components.core.schema import resolve_task

    d = spec.data
    frames = dict(zip(SPLITS, (train, val, test), strict=True))
    passed = []
    empty = [name for name, f in frames.items() if f.empty]
    if empty:
        sizes = {k: len(v) for k, v in frames.items()}
        raise _too_few(sum(sizes.values()), f"split(s) {empty} are empty ({sizes})")
    passed.append("non_empty")

    task = resolve_task(train, spec)
    if task != "regression":
        classes = set(train[d.label].dropna().unique())
        for name in ("val", "test"):
            missing = classes - set(frames[name][d.label].dropna().unique())
            if missing:
                raise _too_few(
                    sum(map(len, frames.values())),
                    f"the {name} split has no rows of class(es) {sorted(map(str, missing))} "
                    f"of {d.label!r} present in train",
                )
        passed.append("classes_present")

    if strategy == "entity":
        ids = {k: set(v[d.entity_column]) for k, v in frames.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = ids[a] & ids[b]
            if shared:
                rows = int(frames[a][d.entity_column].isin(shared).sum())
                raise LeakageError(
                    f"entity leakage: {len(shared)} {d.entity_column!r} value(s) are in both "
                    f"{a} and {b} ({rows} {a} rows), e.g. {sorted(map(str, shared))[:3]}"
                )
        passed.append("no_entity_overlap")

    if strategy == "time":
        ts = d.timestamp_column
        for a, b in (("train", "val"), ("val", "test")):
            cutoff = frames[b][ts].min()
            late = int((frames[a][ts] > cutoff).sum())
            if late:
                raise LeakageError(
                    f"time leakage: {late} {a} row(s) have {ts!r} after the first {b} row "
                    f"({cutoff}); every {a} timestamp must be <= every {b} timestamp"
                )
        passed.append("no_time_overlap")

    leaks = _target_leaks(train, spec, task)
    if leaks:
        raise LeakageError(
            "target leakage: "
            + "; ".join(leaks)
            + " (drop the column with data.drop, or fix the source)"
        )
    passed.append("no_target_leakage")
    return passed


def run(spec: Spec, data_path: str, train_out: str, val_out: str, test_out: str) -> SplitResult:
    """Split the validated table into three Parquet files after the leakage checks pass."""
    from kubeloop.components.core.io import read_table, write_table
    from kubeloop.components.core.schema import resolve_task

    df = read_table(data_path, what="validated data")
    task = resolve_task(df, spec)
    strategy = choose_strategy(df, spec, task)
    train, val, test = split_frame(df, spec, strategy, task)
    checks = check_leakage(train, val, test, spec, strategy)
    for frame, path in ((train, train_out), (val, val_out), (test, test_out)):
        write_table(frame.reset_index(drop=True), path)
    return SplitResult(
        strategy=strategy,
        counts={"train": len(train), "val": len(val), "test": len(test)},
        checks=checks,
    )
