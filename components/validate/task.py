"""Validate: Great Expectations on the ingested table; blocking failures stop the loop.

The suite is the spec's `validation.expectations` when given; otherwise it is suggested
from a reference snapshot: `validation.reference`, else `{workdir}/validation/
reference.parquet` (the first accepted data, written after the first successful run),
else the data itself. Both reports are written before anything is raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from kubeloop.components.core.errors import ValidationBlocked
from kubeloop.components.core.spec import Spec

if TYPE_CHECKING:
    import pandas as pd

REFERENCE_MAX_ROWS = 10_000


class ValidationResult(BaseModel):
    success: bool
    blocking: list[str]
    warnings: list[str]
    evaluated: int
    reference: str | None


def default_reference(spec: Spec) -> Path:
    return Path(spec.workdir) / "validation" / "reference.parquet"


def _reference(spec: Spec) -> tuple[pd.DataFrame | None, str | None]:
    from kubeloop.components.core.io import read_table

    if spec.validation.reference:
        ref = spec.validation.reference
        return read_table(ref, what="validation.reference"), ref
    path = default_reference(spec)
    if path.is_file():
        return read_table(path, what="validation reference"), str(path)
    return None, None


def run(spec: Spec, data_path: str, report_html: str, report_md: str) -> ValidationResult:
    """Validate `data_path`; raises ValidationBlocked (after writing reports) on blocking fails."""
    from kubeloop.components.core.io import read_table, write_table
    from kubeloop.components.validate import report, suite

    df = read_table(data_path, what="validated data")
    if spec.validation.expectations is not None:
        checks, reference = suite.from_spec(spec.validation.expectations), None
    else:
        ref_df, reference = _reference(spec)
        checks = suite.suggest(df if ref_df is None else ref_df, spec)
    checks = suite.run_checks(df, checks)
    report.write_html(report_html, checks, data_path, reference)
    report.write_markdown(report_md, checks, data_path, reference)

    def describe(c: suite.Check) -> str:
        where = c.column if c.column is not None else "(table)"
        return f"{where}: {c.kind} failed, expected {c.expected}, observed {c.observed or '?'}"

    blocking = [describe(c) for c in checks if not c.success and c.severity == "block"]
    warnings = [describe(c) for c in checks if not c.success and c.severity == "warn"]
    if blocking:
        raise ValidationBlocked(
            f"data validation blocked {data_path}: {len(blocking)} blocking expectation(s) "
            "failed:\n  " + "\n  ".join(blocking) + f"\nreport: {report_html}",
            report_path=report_html,
        )
    ref_path = default_reference(spec)
    if not ref_path.exists():
        # The first accepted data becomes the reference the next runs are checked against.
        sample = df.sample(min(len(df), REFERENCE_MAX_ROWS), random_state=0)
        write_table(sample.sort_index(), ref_path)
    return ValidationResult(
        success=True,
        blocking=[],
        warnings=warnings,
        evaluated=len(checks),
        reference=reference,
    )
