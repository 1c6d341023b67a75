"""Small public datasets bundled with scikit-learn (no download), exported as CSV + spec."""

from __future__ import annotations

from pathlib import Path

from kubeloop.components.core.errors import DataError

# name -> (sklearn loader, label column, task)
DATASETS: dict[str, tuple[str, str, str]] = {
    "breast_cancer": ("load_breast_cancer", "target", "binary"),
    "wine": ("load_wine", "target", "multiclass"),
    "diabetes": ("load_diabetes", "target", "regression"),
}

SPEC_TEMPLATE = """\
# kubeloop project spec for scikit-learn's bundled {name!r} dataset ({task}).
name: {name}
data:
  source: {name}.csv
  label: {label}
  task: {task}
  # No entity/timestamp columns: ingest derives row_id and ingested_at.
"""


def export(name: str, out_dir: str | Path) -> tuple[Path, str]:
    """Write `<name>.csv` (and a minimal kubeloop.yaml if absent); returns (path, label)."""
    import sklearn.datasets

    if name not in DATASETS:
        raise DataError(f"dataset: expected one of {sorted(DATASETS)}, got {name!r}")
    loader, label, task = DATASETS[name]
    frame = getattr(sklearn.datasets, loader)(as_frame=True).frame
    # Column names like "mean radius" become "mean_radius": safe as feature names everywhere.
    frame.columns = [str(c).strip().replace(" ", "_").replace("/", "_") for c in frame.columns]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.csv"
    frame.to_csv(path, index=False)
    spec = out / "kubeloop.yaml"
    if not spec.exists():
        spec.write_text(SPEC_TEMPLATE.format(name=name, label=label, task=task))
    return path, label
