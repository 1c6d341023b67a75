"""The model card (Markdown) written next to every registered model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubeloop.components.core.spec import Spec
    from kubeloop.components.evaluate.task import EvalResult


def _slice_table(rows: list[dict[str, Any]]) -> list[str]:
    metrics = [k for r in rows for k in r if k not in ("value", "n", "skipped")]
    cols = ["value", "n", *dict.fromkeys(metrics), "note"]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [
            f"{r[c]:.4f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols[:-1]
        ]
        out.append("| " + " | ".join([*cells, r.get("skipped", "")]) + " |")
    return out


def render_card(
    spec: Spec,
    *,
    tag: str,
    eval_result: EvalResult,
    data_fingerprint: str,
    run_id: str,
    features: list[str],
    data_summary: dict[str, Any] | None = None,
) -> str:
    """Markdown card. `data_summary` may hold ``rows`` ({split: n}) and ``audit``
    ({issue: count}, e.g. from cleaning) for the data and limits sections."""
    r = eval_result
    summary = data_summary or {}
    rows = summary.get("rows") or {"validation": r.n_val, "test": r.n_test}
    lines = [
        f"# Model card: {tag}",
        "",
        "## Intended use",
        spec.description or f"Predicts `{spec.data.label}` for project `{spec.name}`.",
        f"Scores one row per `{spec.data.entity_column}` using the features of feature "
        f"service `{spec.feature_service}`. Not validated for data outside the training "
        "distribution (see the drift reference in `reference_stats.json`).",
        "",
        "## Data",
        f"- source: `{spec.data.source}`",
        f"- label: `{spec.data.label}` ({r.task}"
        + (f"; classes {r.classes}" if r.classes else "")
        + ")",
        f"- rows per split: {', '.join(f'{k} {v}' for k, v in rows.items())}",
        f"- data fingerprint: `{data_fingerprint}`; run: `{run_id}`; spec hash "
        f"`{spec.spec_hash()}`",
        "",
        f"## Features ({len(features)})",
        ", ".join(f"`{f}`" for f in features) or "(none recorded)",
        "",
        "## Metrics (test split)",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in r.metrics.items()],
        "",
        f"Primary metric: **{r.primary_metric}** = {r.primary_value:.4f} "
        f"({'higher' if r.higher_is_better else 'lower'} is better).",
    ]
    if r.threshold is not None:
        lines.append(
            f"Decision threshold: {r.threshold:.4f} (chosen on the validation split by "
            f"`{spec.evaluate.threshold}`); predict `{r.classes[1] if r.classes else 1}` "
            "when its probability is at least this."
        )
    for col, srows in r.slices.items():
        lines += ["", f"### Slices by `{col}`", *_slice_table(srows)]
    lines += [
        "",
        f"## Gate: {'PASSED' if r.gate.passed else 'FAILED'}",
        *[f"- {reason}" for reason in r.gate.reasons],
        "",
        "## Limits",
    ]
    limits = [
        f"slice `{col}` = `{s['value']}` not evaluated: {s['skipped']}"
        for col, srows in r.slices.items()
        for s in srows
        if "skipped" in s
    ]
    limits += [f"data issue: {k}: {v}" for k, v in (summary.get("audit") or {}).items() if v]
    limits += list(r.notes)
    lines += [f"- {x}" for x in limits] or ["- none recorded"]
    name = tag.split(":")[0]
    lines += [
        "",
        "## How to load",
        "```python",
        "from kubeloop.components.register import registry",
        f'model = registry.load("{tag}")  # or "{name}:production"',
        "scores = model.predict(raw_df)  # cleaning + predictor",
        "```",
        f"CLI: `kubeloop models show {tag}`",
        "",
    ]
    return "\n".join(lines)
