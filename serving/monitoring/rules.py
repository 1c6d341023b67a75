"""The packaged Prometheus rules (``rules.yaml``): read, list, install, and the metric names
their expressions select (what the sync test checks against the package's definitions)."""

from __future__ import annotations

import re
import shutil
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kubeloop.components.core.io import atomic_path

RULES_FILE = Path(__file__).with_name("rules.yaml")
RUNBOOK_FILE = Path(__file__).with_name("README.md")
# Alerts carrying this label are routed by Alertmanager to the retrain trigger.
RETRAIN_LABEL = ("action", "retrain")


@cache
def load_rules() -> dict[str, Any]:
    """The parsed rules file (``groups: [{name, rules: [...]}, ...]``)."""
    rules: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text())
    return rules


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [r for r in all_rules() if "alert" in r]


def recording_rules() -> list[dict[str, Any]]:
    return [r for r in all_rules() if "record" in r]


def retrain_alert_names() -> list[str]:
    """The alerts that request a retraining run (label ``action: retrain``)."""
    key, value = RETRAIN_LABEL
    return [r["alert"] for r in alert_rules() if r.get("labels", {}).get(key) == value]


def install_rules(folder: str | Path) -> Path:
    """Copy the rules file into `folder` (atomically) for a local Prometheus; returns its path."""
    target = Path(folder) / RULES_FILE.name
    with atomic_path(target) as tmp:
        shutil.copyfile(RULES_FILE, tmp)
    return target


# --------------------------------------------------------------------- PromQL metric names

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
# An identifier not inside a number or duration (`1e3`, `5m`) and not a function call.
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\s*\(|[\w:])")
_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2",
}  # fmt: skip
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')


def selected_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (series selectors, not functions or labels).

    A tokenizer, not a full parser: it drops strings, label matchers, ranges and grouping
    clauses, then keeps the identifiers that are not called like functions nor keywords."""
    names = set(_NAME_MATCHER.findall(expr))
    stripped = _STRING.sub('""', expr)
    stripped = _BRACES.sub(" ", stripped)
    stripped = _BRACKETS.sub(" ", stripped)
    stripped = _GROUPING.sub(" ", stripped)
    names |= {m for m in _IDENT.findall(stripped) if m.lower() not in _KEYWORDS}
    return names
