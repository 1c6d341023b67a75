"""The project spec (`kubeloop.yaml`): one pydantic model for the whole loop.

The spec flows CLI → pipeline parameter (`spec_json`) → each component, which re-validates
it with :func:`Spec.model_validate_json`. Secrets never live in it: `${VAR}` references
are resolved from the environment when the file is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kubeloop.components.core.errors import SpecError

TaskType = Literal["auto", "binary", "multiclass", "regression"]
ResolvedTask = Literal["binary", "multiclass", "regression"]
Severity = Literal["warn", "block"]

DERIVED_ENTITY = "row_id"
DERIVED_TIMESTAMP = "ingested_at"


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class SplitSpec(Section):
    strategy: Literal["auto", "time", "entity", "stratified", "random"] = "auto"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42

    @field_validator("fractions")
    @classmethod
    def _sums_to_one(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError(f"expected three positive fractions summing to 1, got {list(v)}")
        return v


class CleanSpec(Section):
    """Cleaning rules; parameters are fitted on the training split only."""

    impute_numeric: Literal["median", "mean"] = "median"
    impute_categorical: Literal["mode", "missing"] = "missing"
    # Values outside these training quantiles are capped (winsorised).
    cap_quantiles: tuple[float, float] = (0.001, 0.999)
    # Hard physical limits per column, e.g. {tenure_months: [0, 600]}: values outside are
    # impossible and become missing before imputation.
    valid_ranges: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # Training rows whose feature values repeat under at least this many distinct
    # data.entity values look scripted (bots, test accounts) and are dropped from train;
    # only applies when data.entity is set; 0 disables.
    bot_min_entities: int = Field(default=5, ge=0)


class DataSpec(Section):
    source: str = Field(description="CSV or Parquet file (local path or fsspec URI)")
    label: str
    task: TaskType = "auto"
    entity: str | None = None
    timestamp: str | None = None
    features: list[str] | None = None  # None: every other column
    categorical: list[str] | None = None  # None: inferred from dtypes
    drop: list[str] = Field(default_factory=list)
    split: SplitSpec = Field(default_factory=SplitSpec)
    clean: CleanSpec = Field(default_factory=CleanSpec)

    @property
    def entity_column(self) -> str:
        return self.entity or DERIVED_ENTITY

    @property
    def timestamp_column(self) -> str:
        return self.timestamp or DERIVED_TIMESTAMP


class Expectation(Section):
    """One data expectation; `kind` picks the Great Expectations expectation."""

    kind: Literal[
        "not_null", "between", "in_set", "unique", "type", "row_count", "columns", "null_fraction"
    ]
    column: str | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    type: str | None = None
    mostly: float = Field(default=1.0, gt=0, le=1)
    severity: Severity = "block"

    @model_validator(mode="after")
    def _complete(self) -> Expectation:
        table_level = {"row_count", "columns"}
        if self.kind not in table_level and not self.column:
            raise ValueError(f"kind {self.kind!r} needs a 'column'")
        bounded = ("between", "row_count", "null_fraction")
        if self.kind in bounded and self.min is None and self.max is None:
            raise ValueError(f"kind {self.kind!r} needs 'min' and/or 'max'")
        if self.kind in ("in_set", "columns") and not self.values:
            raise ValueError(f"kind {self.kind!r} needs a non-empty 'values' list")
        if self.kind == "type" and self.type not in ("numeric", "string", "datetime", "boolean"):
            raise ValueError(
                f"kind 'type' needs type: numeric | string | datetime | boolean, got {self.type!r}"
            )
        return self


class ValidationSpec(Section):
    expectations: list[Expectation] | None = None  # None: suggested from the reference
    reference: str | None = None  # reference snapshot; None: the last accepted snapshot
    suggest_severity: Severity = "block"
    max_null_fraction: float = 0.5


class FeatureServiceSpec(Section):
    name: str | None = None  # None: the project name
    version: int = 1

    def full_name(self, project: str) -> str:
        return f"{self.name or project}_v{self.version}"


class FeaturesSpec(Section):
    enabled: bool = True
    service: FeatureServiceSpec = Field(default_factory=FeatureServiceSpec)
    online: bool = True  # materialize to the online store for serving
    store_yaml: str | None = None  # feature_store.yaml; None: local SQLite under workdir
    ttl_days: int = 3650


class AcceleratorSpec(Section):
    type: str = "nvidia.com/gpu"
    count: int = 0  # GPUs requested for training on a cluster; 0: CPU
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(default_factory=list)


class TrainSpec(Section):
    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    hidden_units: list[int] = Field(default_factory=lambda: [128, 64])
    dropout: float = Field(default=0.1, ge=0, lt=1)
    embedding_dim: int | None = None  # None: min(16, (cardinality + 1) // 2)
    patience: int = Field(default=5, ge=1)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    accelerator: AcceleratorSpec = Field(default_factory=AcceleratorSpec)


class SearchParam(Section):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical parameter needs a non-empty 'choices' list")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} parameter needs 'low' and 'high'")
        if self.low >= self.high:
            raise ValueError(f"expected low < high, got low={self.low} high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low}")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot both be set")
        return self

    def bounds(self) -> tuple[float, float] | None:
        """(min, max) of the values this parameter can take; None for non-numeric choices."""
        if self.type != "categorical":
            return float(self.low), float(self.high)  # type: ignore[arg-type]
        if all(isinstance(c, int | float) and not isinstance(c, bool) for c in self.choices or []):
            return float(min(self.choices or [0])), float(max(self.choices or [0]))
        return None


# Tunable hyperparameters: (integer-valued, smallest allowed, largest allowed, upper bound
# exclusive). Checked when the spec loads, so a bad space fails before any trial runs.
TUNABLE: dict[str, tuple[bool, float, float, bool]] = {
    "learning_rate": (False, 0.0, float("inf"), False),  # > 0, checked below
    "weight_decay": (False, 0.0, float("inf"), False),
    "dropout": (False, 0.0, 1.0, True),
    "batch_size": (True, 1, float("inf"), False),
    "hidden_units": (True, 1, float("inf"), False),
    "n_layers": (True, 1, float("inf"), False),
    "embedding_dim": (True, 1, float("inf"), False),
}


def _check_tunable(name: str, p: SearchParam) -> None:
    integer, lo, hi, hi_exclusive = TUNABLE[name]
    if integer and p.type == "float":
        raise ValueError(f"{name}: takes whole numbers; use type int or categorical")
    if (
        integer
        and p.type == "categorical"
        and not all(isinstance(c, int) and not isinstance(c, bool) for c in p.choices or [])
    ):
        raise ValueError(f"{name}: choices must be whole numbers, got {p.choices}")
    bounds = p.bounds()
    if bounds is None:
        raise ValueError(f"{name}: choices must be numbers, got {p.choices}")
    low, high = bounds
    if name == "learning_rate" and low <= 0:
        raise ValueError(f"{name}: must be > 0, got {low}")
    if low < lo or high > hi or (hi_exclusive and high >= hi):
        upper = f"< {hi}" if hi_exclusive else f"<= {hi}"
        raise ValueError(f"{name}: values must be >= {lo} and {upper}, got [{low}, {high}]")


class TuneSpec(Section):
    enabled: bool = True
    trials: int = Field(default=8, ge=1)
    parallelism: int = Field(default=4, ge=1)
    epochs: int = Field(default=10, ge=1)  # per trial; pruning stops bad trials earlier
    storage: str | None = None  # Optuna RDB URL or journal file; None: journal under workdir
    sampler_seed: int = 42
    search_space: dict[str, SearchParam] = Field(
        default_factory=lambda: {
            "learning_rate": SearchParam(type="float", low=1e-4, high=1e-2, log=True),
            "hidden_units": SearchParam(type="categorical", choices=[32, 64, 128, 256]),
            "n_layers": SearchParam(type="int", low=1, high=3),
            "dropout": SearchParam(type="float", low=0.0, high=0.4),
        }
    )

    @field_validator("search_space")
    @classmethod
    def _known_params(cls, v: dict[str, SearchParam]) -> dict[str, SearchParam]:
        unknown = sorted(set(v) - set(TUNABLE))
        if unknown:
            raise ValueError(
                f"unknown tunable parameter(s) {unknown}; expected some of {sorted(TUNABLE)}"
            )
        for name, param in v.items():
            _check_tunable(name, param)
        return v


class EvaluateSpec(Section):
    metric: str | None = None  # primary metric; None: roc_auc (binary), f1_macro, rmse
    minimums: dict[str, float] = Field(default_factory=dict)  # higher-is-better floors
    maximums: dict[str, float] = Field(default_factory=dict)  # lower-is-better ceilings
    champion_margin: float = Field(default=0.0, ge=0)  # beat the champion by >= this (> 0 if 0)
    slice_by: list[str] = Field(default_factory=list)
    threshold: Literal["f1", "youden", "fixed"] = "f1"
    fixed_threshold: float = 0.5
    calibration_bins: int = 10


# live_quality_delta needs ground-truth labels (POST /feedback): never a default check.
BUILTIN_CHECKS = ("success_rate", "latency_p99_ratio", "prediction_psi", "live_quality_delta")


class AnalysisCheck(Section):
    """One canary analysis metric (Argo Rollouts' AnalysisTemplate metric, as data).

    A built-in name (``success_rate``, ``latency_p99_ratio``, ``prediction_psi``,
    ``live_quality_delta``) needs no query; any other name needs ``query``: PromQL returning
    one number, where ``{variant}``, ``{stable}``/``{canary}`` (model tags) and ``{window}``
    (e.g. ``60s``) are filled in.
    The check passes when ``min <= value <= max`` (either bound may be omitted)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    query: str | None = None
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _complete(self) -> AnalysisCheck:
        if self.min is None and self.max is None:
            raise ValueError(f"check {self.name!r}: give `min`, `max` or both")
        if self.name not in BUILTIN_CHECKS and not self.query:
            raise ValueError(
                f"check {self.name!r}: not a built-in check ({', '.join(BUILTIN_CHECKS)}), "
                "so it needs a PromQL `query`"
            )
        return self


def _default_checks() -> list[AnalysisCheck]:
    return [
        AnalysisCheck(name="success_rate", min=0.99),
        AnalysisCheck(name="latency_p99_ratio", max=1.5),
        AnalysisCheck(name="prediction_psi", max=0.2),
    ]


class ServeSpec(Section):
    """The gateway (stable | canary) and its canary rollouts."""

    host: str = "127.0.0.1"  # gateway address
    port: int = Field(default=3000, ge=1, le=65535)
    # Remote variants (a cluster): variant service URLs; None = the model runs in the gateway.
    stable_url: str | None = None
    canary_url: str | None = None
    max_rows: int = Field(default=1000, ge=1)  # rows per request
    max_batch_size: int = Field(default=64, ge=1)  # adaptive batching: rows per model call
    shadow_percent: float = Field(default=0.0, ge=0, le=100)  # stable traffic mirrored to canary
    admin_token_env: str = "KUBELOOP_ADMIN_TOKEN"  # env var holding the admin bearer token
    prediction_log: str | None = None  # Parquet sink folder; None: <workdir>/prediction_log
    # Rollout: weights in percent, each held for interval_s, then analysed over that window.
    canary_steps: list[int] = Field(default_factory=lambda: [5, 10, 25, 50, 100])
    interval_s: float = Field(default=60.0, gt=0)
    min_requests: int = Field(default=20, ge=1)  # per variant per window, else insufficient-data
    # live_quality_delta: labelled rows per variant per window, else insufficient-data.
    min_labels: int = Field(default=100, ge=1)
    failure_limit: int = Field(default=0, ge=0)  # failed analyses tolerated before rollback
    deadline_s: float = Field(default=1800.0, gt=0)  # insufficient data this long: roll back
    analysis: list[AnalysisCheck] = Field(default_factory=_default_checks)

    @field_validator("canary_steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if not v or any(not 0 < w <= 100 for w in v) or v != sorted(set(v)) or v[-1] != 100:
            raise ValueError(
                "canary_steps: strictly increasing weights in 1..100 that end at 100, "
                f"e.g. [5, 10, 25, 50, 100]; got {v}"
            )
        return v

    @field_validator("analysis")
    @classmethod
    def _unique_checks(cls, v: list[AnalysisCheck]) -> list[AnalysisCheck]:
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"analysis: check name(s) {dupes} given more than once")
        return v


# Rows a drift window needs before its check says more than "insufficient data".
MIN_DRIFT_ROWS = 200


class MonitorSpec(Section):
    prometheus_url: str = "http://127.0.0.1:9090"
    drift_window: int = Field(
        default=1000,
        ge=MIN_DRIFT_ROWS,
        description=f"Rows per variant in a drift window (at least {MIN_DRIFT_ROWS}).",
    )
    false_alarm_rate: float = Field(
        default=0.01, gt=0, lt=0.5, description="Drift checks' false-alarm rate per window."
    )
    quality_window: int = Field(
        default=1000, ge=1, description="Live quality: the last N labelled rows per variant."
    )
    min_labels: int = Field(
        default=100, ge=1, description="Live quality is exported once this many rows are labelled."
    )

    @model_validator(mode="after")
    def _labels_fit_window(self) -> MonitorSpec:
        if self.min_labels > self.quality_window:
            raise ValueError(
                f"min_labels ({self.min_labels}) must be <= quality_window ({self.quality_window})"
            )
        return self


class RetrainSpec(Section):
    enabled: bool = True
    cooldown_s: float = 3600.0
    daily_budget: int = 3
    # Ingest appends labelled serving traffic (prediction log x label log) to data.source.
    use_feedback: bool = True


class Spec(Section):
    """The whole project: every section of the loop."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    description: str = ""
    workdir: str = ".kubeloop"  # local state: artifacts, runs, feature store, study
    data: DataSpec
    validation: ValidationSpec = Field(default_factory=ValidationSpec)
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    tune: TuneSpec = Field(default_factory=TuneSpec)
    evaluate: EvaluateSpec = Field(default_factory=EvaluateSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)

    @property
    def feature_service(self) -> str:
        return self.features.service.full_name(self.name)

    @property
    def prediction_log_dir(self) -> Path:
        """Where the gateway's prediction log goes (Parquet files, one folder per day)."""
        return Path(self.serve.prediction_log or Path(self.workdir) / "prediction_log")

    @property
    def feedback_dir(self) -> Path:
        """Ground-truth labels (POST /feedback, `kubeloop feedback import`): Parquet parts."""
        return Path(self.workdir) / "feedback"

    @property
    def rollouts_dir(self) -> Path:
        """Canary rollout state and decision records."""
        return Path(self.workdir) / "rollouts"

    def spec_hash(self) -> str:
        """Stable hash of the validated spec (defaults included)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def resolve_paths(self, base: Path) -> Spec:
        """Make local paths absolute against `base` (the spec file's folder)."""

        def resolve(p: str | None) -> str | None:
            if p is None or "://" in p or Path(p).is_absolute():
                return p
            return str((base / p).resolve())

        data = self.data.model_copy(update={"source": resolve(self.data.source)})
        validation = self.validation.model_copy(
            update={"reference": resolve(self.validation.reference)}
        )
        features = self.features.model_copy(
            update={"store_yaml": resolve(self.features.store_yaml)}
        )
        tune = self.tune.model_copy(update={"storage": resolve(self.tune.storage)})
        serve = self.serve.model_copy(update={"prediction_log": resolve(self.serve.prediction_log)})
        return self.model_copy(
            update={
                "workdir": resolve(self.workdir),
                "data": data,
                "validation": validation,
                "features": features,
                "tune": tune,
                "serve": serve,
            }
        )


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, path: str) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = os.environ.get(name, default)
            if value is None:
                raise SpecError(
                    f"{path}: environment variable ${{{name}}} is not set "
                    f"(set it, or write ${{{name}:-default}})"
                )
            return value

        return _ENV_REF.sub(sub, node)
    return node


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        else:
            lines.append(f"{loc}: {e['msg']}")
    return f"{source}: invalid spec\n  " + "\n  ".join(lines)


def parse_spec(raw: dict[str, Any], source: str = "spec") -> Spec:
    """Validate a spec mapping (after `${VAR}` interpolation)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Spec.model_validate(_interpolate(raw, ""))
    except ValidationError as err:
        raise SpecError(_format_errors(err, source)) from None


def load_spec(path: str | Path, *, resolve: bool = True) -> Spec:
    """Load and validate `kubeloop.yaml`; relative paths resolve against its folder."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: spec file not found (create one with `kubeloop init`)")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as err:
        raise SpecError(f"{p}: not valid YAML: {err}") from None
    spec = parse_spec(raw, str(p))
    return spec.resolve_paths(p.parent.resolve()) if resolve else spec


def spec_from_json(spec_json: str) -> Spec:
    """What components call: re-validate the spec passed as a pipeline parameter."""
    try:
        return Spec.model_validate_json(spec_json)
    except ValidationError as err:
        raise SpecError(_format_errors(err, "spec_json")) from None
