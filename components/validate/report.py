"""Validation reports: one HTML page and one Markdown file with the same table."""

from __future__ import annotations

import html
from pathlib import Path

from kubeloop.components.validate.suite import Check

HEADER = ("expectation", "column", "severity", "result", "observed", "expected")


def _status(c: Check) -> str:
    if c.success:
        return "pass"
    return "FAIL" if c.severity == "block" else "warn"


def _rows(checks: list[Check]) -> list[tuple[str, ...]]:
    # Failures first: that is what a reader opens the report for.
    order = sorted(checks, key=lambda c: (bool(c.success), c.severity != "block"))
    return [
        (c.kind, c.column or "(table)", c.severity, _status(c), c.observed, c.expected)
        for c in order
    ]


def _summary(checks: list[Check], data: str, reference: str | None) -> str:
    failed = sum(not c.success for c in checks)
    blocking = sum(not c.success and c.severity == "block" for c in checks)
    ref = reference or "the data itself (first run)"
    return (
        f"{len(checks)} expectations on {data} (suite from {ref}): "
        f"{failed} failed, {blocking} blocking."
    )


def write_html(path: str, checks: list[Check], data: str, reference: str | None) -> None:
    colors = {"pass": "#e6f4ea", "warn": "#fff4ce", "FAIL": "#fce8e6"}
    head = "".join(f"<th>{h}</th>" for h in HEADER)
    body = "\n".join(
        f'<tr style="background:{colors[row[3]]}">'
        + "".join(f"<td>{html.escape(str(x))}</td>" for x in row)
        + "</tr>"
        for row in _rows(checks)
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>kubeloop data validation</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #ccc;padding:4px 8px;
text-align:left}} table{{border-collapse:collapse}}</style></head>
<body><h1>Data validation</h1>
<p>{html.escape(_summary(checks, data, reference))}</p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></body></html>
"""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(page)


def write_markdown(path: str, checks: list[Check], data: str, reference: str | None) -> None:
    def cell(x: str) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Data validation",
        "",
        _summary(checks, data, reference),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(cell(x) for x in row) + " |" for row in _rows(checks)),
    ]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")
