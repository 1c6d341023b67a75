"""The model registry: kubeloop models in the BentoML model store, with lifecycle stages.

Contract (serving and canary rollouts build on it)
--------------------------------------------------
* **Store location.** ``$BENTOML_HOME/models`` (default ``~/bentoml/models``), the same
  directory ``bentoml serve`` reads. Every function here resolves ``BENTOML_HOME`` *at call
  time* and passes an explicit ``ModelStore`` to ``bentoml.models.create/get/list``
  (their ``_model_store`` argument). BentoML's own default store is a DI singleton that
  freezes ``BENTOML_HOME`` the first time anything touches it, so setting the variable later
  (e.g. ``monkeypatch.setenv`` in a test) would otherwise be silently ignored. Code that uses
  the global BentoML store in-process (``bentoml.models.get`` without a store) must set
  ``BENTOML_HOME`` before its first BentoML call, or call
  ``BentoMLContainer.model_store.set(ModelStore(path))``.
* **One model name per project** (``spec.name``); versions are BentoML's generated ids. A tag
  is ``name:version``; :func:`get` also accepts ``name`` / ``name:latest`` (newest),
  a unique version prefix, and ``name:<stage>`` (e.g. ``churn:production``).
* **Files** in each model directory: ``model/`` (the trained model without checkpoints or
  TensorBoard logs), ``clean_params.json`` (preprocessing fitted on train),
  ``reference_stats.json`` (training feature/label statistics for drift checks),
  ``reference_sample.parquet`` (a seeded sample of at most 5,000 cleaned training rows'
  features plus the model's predictions on them: what live drift checks compare with),
  ``metrics.json`` (the :class:`EvalResult`), ``model_card.md`` and ``report.html``.
* **Labels** (``stage``, ``project``, ``task``) and **metadata** (metrics, primary metric,
  threshold, data fingerprint, spec hash, run id, feature service, label, classes, features)
  are written once at registration; BentoML has no supported API to change labels of a saved
  model (``ModelInfo`` is frozen, ``Model.with_options`` only changes load options).
* **Stages** (candidate, production, previous, failed, archived) therefore live in a small
  index, ``$BENTOML_HOME/kubeloop_stages.json`` (``{tag: stage}``), rewritten atomically
  (temp file + ``os.replace``) under an ``flock``. The index wins over the ``stage`` label,
  which only records the stage at registration. Invariant kept by :func:`set_stage`: at most
  one ``production`` and one ``previous`` per name — promoting a model moves the old
  production to ``previous`` (the rollback target) and the old previous to ``archived``.
* **Champion** of a name: its production model, else its newest candidate
  (:func:`champion`).
* **Atomic registration.** BentoML's own save copies the files straight into
  ``models/<name>/<version>`` (a concurrent reader could see a half-copied model; a killed
  process would leave one behind). So :func:`register` lets BentoML save the model into a
  throwaway ``ModelStore`` under ``$BENTOML_HOME/.staging/<random>/`` (same filesystem), then
  moves the finished version folder into the real store with one ``os.rename`` and points
  ``models/<name>/latest`` (BentoML's ``name:latest`` pointer, a one-line file) at the newest
  version, rewritten atomically. Readers see no model or a complete one; any error before
  the rename leaves the store unchanged. The staging folder is always removed (a killed
  process can leave one only under ``.staging``, which no reader looks at).
* **Loading.** :func:`load` returns a :class:`RegisteredModel` whose ``predict(raw_df)``
  applies the model's own cleaning (``CleanParams``) and then the predictor. The predictor
  and preprocessing loaders are injectable (tests use fakes that satisfy :class:`Predictor`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from pydantic import BaseModel

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.io import write_text_atomic

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from bentoml._internal.models.model import ModelStore

    from kubeloop.components.core.spec import Spec
    from kubeloop.components.evaluate.task import EvalResult

Stage = Literal["candidate", "production", "previous", "failed", "archived"]
STAGES: tuple[str, ...] = get_args(Stage)
STAGES_FILE = "kubeloop_stages.json"
REFERENCE_SAMPLE_FILE = "reference_sample.parquet"
STAGING_DIR = ".staging"  # under $BENTOML_HOME: same filesystem as models/, so rename is atomic
# Left out of the registered copy of model_dir: training-time artifacts, not needed to serve.
EXCLUDED_MODEL_FILES = ("checkpoints", "tensorboard")


class Predictor(Protocol):
    """What the registry needs from a trained model (``TabularPredictor`` satisfies it)."""

    @property
    def task(self) -> str: ...

    @property
    def classes(self) -> list[Any]: ...

    @property
    def features(self) -> list[str]: ...

    def predict(self, df: pd.DataFrame) -> np.ndarray: ...


PredictorLoader = Callable[[str], Predictor]
Preprocess = Callable[["pd.DataFrame"], "pd.DataFrame"]
PreprocessLoader = Callable[[str], Preprocess]


def load_predictor(model_dir: str) -> Predictor:
    """The real loader: ``TabularPredictor.load`` (imported lazily: torch is heavy)."""
    from kubeloop.components.train.model import TabularPredictor

    predictor: Predictor = TabularPredictor.load(model_dir)
    return predictor


def load_preprocess(clean_params_path: str) -> Preprocess:
    """The real preprocessing: the clean stage's ``apply`` with the fitted ``CleanParams``."""
    from kubeloop.components.clean.task import CleanParams, apply

    params = CleanParams.model_validate_json(Path(clean_params_path).read_text())

    def preprocess(df: pd.DataFrame) -> pd.DataFrame:
        cleaned, _counts = apply(df, params)
        return cleaned

    return preprocess


class ModelInfo(BaseModel):
    """A registered model as kubeloop sees it."""

    tag: str
    name: str
    version: str
    stage: str
    created_at: datetime
    labels: dict[str, str]
    metrics: dict[str, float]
    metadata: dict[str, Any]
    path: str

    @property
    def primary_metric(self) -> str | None:
        return self.metadata.get("primary_metric")

    @property
    def primary_value(self) -> float | None:
        m = self.primary_metric
        return self.metrics.get(m) if m else None

    def file(self, name: str) -> Path:
        return Path(self.path) / name


# ---------------------------------------------------------------------------- the store


def store_home() -> Path:
    """``$BENTOML_HOME`` (read now, not cached), default ``~/bentoml``."""
    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser()
    (home / "models").mkdir(parents=True, exist_ok=True)
    return home


def _store() -> ModelStore:
    from bentoml._internal.models.model import ModelStore

    return ModelStore(store_home() / "models")


@contextlib.contextmanager
def _registry_lock() -> Iterator[None]:
    """Exclusive lock for read-modify-write of the stage index and the ``latest`` pointers."""
    with open(store_home() / (STAGES_FILE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _stages_locked() -> Iterator[dict[str, str]]:
    """The stage index, locked for read-modify-write; written back atomically on exit."""
    path = store_home() / STAGES_FILE
    with _registry_lock():
        stages: dict[str, str] = json.loads(path.read_text()) if path.is_file() else {}
        before = dict(stages)
        yield stages
        if stages != before:
            write_text_atomic(path, json.dumps(stages, indent=2, sort_keys=True))


def _read_stages() -> dict[str, str]:
    path = store_home() / STAGES_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _to_info(model: Any, stages: dict[str, str]) -> ModelInfo:
    info = model.info
    tag = str(model.tag)
    metadata = dict(info.metadata)
    return ModelInfo(
        tag=tag,
        name=model.tag.name,
        version=model.tag.version,
        stage=stages.get(tag, info.labels.get("stage", "candidate")),
        created_at=info.creation_time,
        labels=dict(info.labels),
        metrics={k: float(v) for k, v in (metadata.get("metrics") or {}).items()},
        metadata=metadata,
        path=str(model.path),
    )


def _is_kubeloop(model: Any) -> bool:
    return "project" in model.info.labels


def list_models(name: str | None = None) -> list[ModelInfo]:
    """Registered kubeloop models (all names, or one), newest first."""
    from bentoml.exceptions import NotFound

    try:
        models = _store().list(name)
    except (NotFound, ValueError):  # no such name / not a valid tag name
        return []
    stages = _read_stages()
    infos = [_to_info(m, stages) for m in models if _is_kubeloop(m)]
    return sorted(infos, key=lambda i: i.created_at, reverse=True)


def by_stage(name: str, stage: str) -> list[ModelInfo]:
    """Models of `name` in `stage`, newest first."""
    _check_stage(stage)
    return [i for i in list_models(name) if i.stage == stage]


def get(tag: str) -> ModelInfo:
    """``name:version`` (or a unique version prefix), ``name`` / ``name:latest``, or
    ``name:<stage>`` (the newest model of that name in that stage)."""
    from bentoml.exceptions import BentoMLException

    name, _, version = tag.partition(":")
    if version in STAGES:
        found = by_stage(name, version)
        if not found:
            raise KubeloopError(
                f"no model {name!r} in stage {version!r} (see `kubeloop models list --name {name}`)"
            )
        return found[0]
    try:
        model = _store().get(tag)
    except (BentoMLException, ValueError) as err:
        raise KubeloopError(
            f"model {tag!r} not found in the model store {store_home() / 'models'}: {err} "
            "(see `kubeloop models list`)"
        ) from None
    return _to_info(model, _read_stages())


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise KubeloopError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")


def set_stage(tag: str, stage: str) -> ModelInfo:
    """Move a model to `stage`. Promoting to production demotes the current production of
    the same name to ``previous`` (and the current previous to ``archived``)."""
    _check_stage(stage)
    info = get(tag)
    with _stages_locked() as stages:
        if stage in ("production", "previous"):
            for other in list_models(info.name):
                if other.tag == info.tag:
                    continue
                current = stages.get(other.tag, other.stage)
                if stage == "production" and current == "production":
                    stages[other.tag] = "previous"
                elif current == "previous":
                    stages[other.tag] = "archived"
        stages[info.tag] = stage
    return get(info.tag)


def champion(name: str) -> ModelInfo | None:
    """The model to beat: the production model of `name`, else its newest candidate."""
    models = list_models(name)
    for stage in ("production", "candidate"):
        found = [m for m in models if m.stage == stage]
        if found:
            return found[0]
    return None


# ---------------------------------------------------------------------------- register


def _metadata_safe(value: Any) -> Any:
    """BentoML metadata accepts basic types only (no None, no numpy): JSON round trip, then
    drop None values from mappings."""

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v if x is not None]
        return v

    return strip(json.loads(json.dumps(value, default=str)))


def _copy_model_dir(src: Path, dst: Path) -> None:
    if not src.is_dir():
        raise FileNotFoundError(f"model_dir not found: {src}")
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*EXCLUDED_MODEL_FILES))


def _publish(staging: Path, name: str, version: str) -> None:
    """Move a completely saved model from the staging store into the real one in one step,
    then point ``name:latest`` at the newest version of `name`."""
    models = store_home() / "models"
    (models / name).mkdir(exist_ok=True)
    with _registry_lock():
        os.rename(staging / name / version, models / name / version)
        # BentoML resolves ``name`` / ``name:latest`` through this one-line file; keep its rule
        # (the version created last). The model is already published, so if the pointer cannot
        # be rewritten, drop it: BentoML rebuilds a missing pointer on the next lookup.
        latest = models / name / "latest"
        try:
            newest = max(_store().list(name), key=lambda m: m.creation_time)
            write_text_atomic(latest, str(newest.tag.version))
        except OSError:
            with contextlib.suppress(OSError):
                latest.unlink(missing_ok=True)


def register(
    spec: Spec,
    *,
    model_dir: str,
    clean_params_path: str,
    eval_result: EvalResult,
    data_fingerprint: str,
    run_id: str,
    reference_stats: dict[str, Any],
    reference_sample: pd.DataFrame | None = None,
    report_html: str | None = None,
    stage: str = "candidate",
    data_summary: dict[str, Any] | None = None,
) -> str:
    """Save a gated model into the store, atomically; returns its tag ``name:version``.

    Refuses (KubeloopError) when the evaluation gate failed. `reference_sample` (optional:
    feature rows + the model's predictions, for drift checks) is stored as
    ``reference_sample.parquet``. `data_summary` (optional: rows
    per split, audit counts) only feeds the model card.
    """
    from bentoml._internal.models.model import ModelStore
    from bentoml.models import create

    from kubeloop.components.register.card import render_card

    _check_stage(stage)
    if not eval_result.gate.passed:
        raise KubeloopError(
            f"refusing to register {spec.name!r}: the evaluation gate failed: "
            + "; ".join(eval_result.gate.reasons)
        )
    features = list(reference_stats.get("features", {}))
    metadata = _metadata_safe(
        {
            "metrics": eval_result.metrics,
            "primary_metric": eval_result.primary_metric,
            "primary_value": eval_result.primary_value,
            "higher_is_better": eval_result.higher_is_better,
            "threshold": eval_result.threshold,
            "data_fingerprint": data_fingerprint,
            "spec_hash": spec.spec_hash(),
            "run_id": run_id,
            "feature_service": spec.feature_service,
            "label": spec.data.label,
            "entity": spec.data.entity_column,
            "timestamp": spec.data.timestamp_column,
            "classes": eval_result.classes,
            "features": features,
            "gate": eval_result.gate.model_dump(),
        }
    )
    labels = {"stage": stage, "project": spec.name, "task": eval_result.task}
    home = store_home()
    (home / STAGING_DIR).mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=home / STAGING_DIR, prefix=f"{spec.name}-"))
    try:
        # BentoML saves into the staging store; the real store sees nothing until _publish.
        with create(
            spec.name, labels=labels, metadata=metadata, _model_store=ModelStore(staging)
        ) as bm:
            root = Path(bm.path)
            _copy_model_dir(Path(model_dir), root / "model")
            shutil.copyfile(clean_params_path, root / "clean_params.json")
            (root / "reference_stats.json").write_text(json.dumps(reference_stats, indent=2))
            if reference_sample is not None:
                reference_sample.to_parquet(root / REFERENCE_SAMPLE_FILE, index=False)
            (root / "metrics.json").write_text(eval_result.model_dump_json(indent=2))
            if report_html is not None:
                shutil.copyfile(report_html, root / "report.html")
            card = render_card(
                spec,
                tag=str(bm.tag),
                eval_result=eval_result,
                data_fingerprint=data_fingerprint,
                run_id=run_id,
                features=features,
                data_summary=data_summary,
            )
            (root / "model_card.md").write_text(card)
            tag = str(bm.tag)
        _publish(staging, bm.tag.name, str(bm.tag.version))
    except OSError as err:
        raise KubeloopError(f"registering {spec.name!r} failed; nothing was saved: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if stage != "candidate":
        set_stage(tag, stage)
    return tag


# ---------------------------------------------------------------------------- load


class RegisteredModel:
    """A loaded registered model: ``predict(raw_df)`` = its cleaning, then its predictor."""

    def __init__(
        self,
        info: ModelInfo,
        predictor: Predictor,
        preprocess: Preprocess,
        reference_stats: dict[str, Any],
    ) -> None:
        self.info = info
        self.predictor = predictor
        self.preprocess = preprocess
        self.reference_stats = reference_stats

    @property
    def task(self) -> str:
        return self.predictor.task

    @property
    def classes(self) -> list[Any]:
        return list(self.predictor.classes)

    @property
    def features(self) -> list[str]:
        return list(self.predictor.features)

    @property
    def threshold(self) -> float | None:
        t = self.info.metadata.get("threshold")
        return None if t is None else float(t)

    @property
    def reference_sample_path(self) -> Path | None:
        """``reference_sample.parquet`` of this model; None for a model registered without one."""
        path = Path(self.info.path) / REFERENCE_SAMPLE_FILE
        return path if path.is_file() else None

    def reference_sample(self) -> pd.DataFrame | None:
        """The stored reference sample (features + predictions), read now; None if absent."""
        import pandas as pd

        path = self.reference_sample_path
        return None if path is None else pd.read_parquet(path)

    def predict(self, raw_df: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.features if c not in raw_df.columns]
        if missing:
            raise KubeloopError(f"model {self.info.tag}: input lacks feature column(s) {missing}")
        return self.predictor.predict(self.preprocess(raw_df))


def load(
    tag: str,
    *,
    predictor_loader: PredictorLoader = load_predictor,
    preprocess_loader: PreprocessLoader = load_preprocess,
) -> RegisteredModel:
    info = get(tag)
    root = Path(info.path)
    stats_path = root / "reference_stats.json"
    return RegisteredModel(
        info,
        predictor_loader(str(root / "model")),
        preprocess_loader(str(root / "clean_params.json")),
        json.loads(stats_path.read_text()) if stats_path.is_file() else {},
    )
