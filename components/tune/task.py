"""Tune stage: an Optuna study whose trials run as separate processes (KFP ParallelFor).

Every trial process opens the same storage, asks the study for one trial, trains with
`train.task.run` (reporting the validation metric each epoch so the pruner can stop bad
trials), and tells the result. Storage: `spec.tune.storage` when given (an RDB URL such as
`sqlite:///...` or `postgresql://...`, or a file path for a journal), else the journal
file `{workdir}/tune/optuna.journal`. Optuna's journal file backend takes a file lock per
write, so several processes can share it; on a cluster the file must sit on a shared
(ReadWriteMany) volume, or use a PostgreSQL URL instead.

Importing this module is cheap: optuna and the trainer are imported inside functions.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubeloop.components.core.errors import KubeloopError
from kubeloop.components.core.spec import SearchParam, Spec
from kubeloop.components.train.params import VALIDATION_METRIC, Direction

if TYPE_CHECKING:
    import optuna

JOURNAL_FILE = "optuna.journal"
_log = logging.getLogger(__name__)


def storage_url(spec: Spec) -> str:
    """Where the study lives: spec.tune.storage, or the journal file under workdir."""
    return spec.tune.storage or str(Path(spec.workdir) / "tune" / JOURNAL_FILE)


def open_storage(url: str) -> optuna.storages.BaseStorage | str:
    """An RDB URL is passed through to Optuna; anything else is a journal file path."""
    if "://" in url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(url).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def study_direction(spec: Spec, train_path: str | None = None) -> Direction | None:
    """maximize roc_auc / f1_macro, minimize rmse; None if the task needs the data."""
    task = spec.data.task
    if task == "auto" and train_path is not None:
        from kubeloop.components.core.io import read_table
        from kubeloop.components.core.schema import resolve_task

        task = resolve_task(read_table(train_path, what="train_path"), spec)
    if task == "auto":
        return None
    return VALIDATION_METRIC[task][1]


def create_study(spec: Spec, study_name: str, train_path: str | None = None) -> str:
    """Create the shared study (or reuse it) and return its name.

    The direction follows the task's validation metric. With `data.task: auto` and no
    `train_path`, the task is unknown here, so the first trial creates the study instead
    (race-safe: creation is load-if-exists).
    """
    import optuna

    direction = study_direction(spec, train_path)
    if direction is not None:
        optuna.create_study(
            storage=open_storage(storage_url(spec)),
            study_name=study_name,
            direction=direction,
            load_if_exists=True,
        )
    return study_name


def _sampler(spec: Spec, trial_index: int) -> optuna.samplers.BaseSampler:
    import optuna

    # Seeded per trial index so a re-run of trial k asks the same thing given the same
    # history. A few random startup trials, then TPE; constant_liar keeps concurrently
    # running trials from being proposed the same point.
    startup = min(10, max(2, spec.tune.trials // 3))
    return optuna.samplers.TPESampler(
        seed=spec.tune.sampler_seed + trial_index, n_startup_trials=startup, constant_liar=True
    )


def default_pruner() -> optuna.pruners.BasePruner:
    import optuna

    # Median of completed trials at the same epoch; the first epochs are too noisy to judge.
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)


def suggest(trial: optuna.Trial, name: str, p: SearchParam) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(name, p.choices or [])
    assert p.low is not None and p.high is not None  # the Spec model guarantees it
    if p.type == "int":
        step = int(p.step) if p.step else 1
        return trial.suggest_int(name, int(p.low), int(p.high), step=step, log=p.log)
    return trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)


def _load_or_create(
    spec: Spec,
    study_name: str,
    train_path: str,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
) -> optuna.Study:
    import optuna

    storage = open_storage(storage_url(spec))
    try:
        return optuna.load_study(
            study_name=study_name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:
        pass
    return optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=study_direction(spec, train_path),
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def run_trial(
    spec: Spec,
    study_name: str,
    train_path: str,
    val_path: str,
    trial_index: int,
    *,
    pruner: optuna.pruners.BasePruner | None = None,
) -> dict[str, Any]:
    """Ask one trial from the shared study, train it, tell the value (or PRUNED/FAIL).

    A trial whose training raises is told FAIL and returned with ``state: "FAIL"`` and the
    ``error``; configuration and data errors (KubeloopError) are raised instead.
    """
    from optuna.trial import TrialState

    from kubeloop.components.train import task as train_task

    study = _load_or_create(
        spec, study_name, train_path, _sampler(spec, trial_index), pruner or default_pruner()
    )
    trial = study.ask()
    params = {name: suggest(trial, name, p) for name, p in spec.tune.search_space.items()}
    trial.set_user_attr("trial_index", trial_index)
    reported: list[float] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
        value = next(v for k, v in metrics.items() if k not in ("train_loss", "val_loss"))
        reported.append(value)
        trial.report(value, epoch)
        return trial.should_prune()

    tb_dir = Path(spec.workdir) / "tune" / "tensorboard" / study_name / f"trial_{trial.number:03d}"
    try:
        with tempfile.TemporaryDirectory(prefix="kubeloop-trial-") as model_dir:
            res = train_task.run(
                spec,
                train_path,
                val_path,
                model_dir,
                params=params,
                epochs=spec.tune.epochs,
                tensorboard_dir=str(tb_dir),
                on_epoch=on_epoch,
            )
    except KubeloopError:
        # User/config errors (SpecError, DataError, a missing device, ...) do not depend on the
        # sampled parameters: every trial would fail the same way, so fail the run now.
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as err:
        # Anything else raised by training belongs to this trial's parameters (a diverging
        # run whose NaN predictions make the metric raise, out of memory for a large
        # network, ...): record the trial as FAIL and let the other trials go on. If none
        # completes, best_params says so.
        error = f"{type(err).__name__}: {err}"
        _log.warning("tune: trial %d failed: %s", trial.number, error, exc_info=True)
        trial.set_user_attr("error", error[:1000])
        frozen = study.tell(trial, state=TrialState.FAIL)
        return {
            "number": frozen.number,
            "state": frozen.state.name,
            "value": None,
            "params": params,
            "error": error,
        }
    except BaseException:  # interrupted or killed: record it, but do not swallow it
        study.tell(trial, state=TrialState.FAIL)
        raise
    trial.set_user_attr("epochs_run", res.epochs_run)
    trial.set_user_attr("best_epoch", res.best_epoch)
    expected = VALIDATION_METRIC[res.task][1]
    if study.direction.name.lower() != expected:
        study.tell(trial, state=TrialState.FAIL)
        raise KubeloopError(
            f"tune: study {study_name!r} was created to {study.direction.name.lower()} but "
            f"the task is {res.task} ({res.val_metric_name}: {expected}); use a new study name"
        )
    if res.stopped == "callback":
        frozen = study.tell(trial, state=TrialState.PRUNED)
    else:
        frozen = study.tell(trial, res.val_metric)
    return {
        "number": frozen.number,
        "state": frozen.state.name,
        "value": frozen.value if frozen.value is not None else (reported[-1] if reported else None),
        "params": params,
        "epochs_run": res.epochs_run,
    }


def best_params(spec: Spec, study_name: str) -> dict[str, Any]:
    """Parameters of the best completed trial (to pass to `train.task.run(params=...)`)."""
    import optuna

    url = storage_url(spec)
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    except KeyError:
        raise KubeloopError(
            f"tune: study {study_name!r} not found in {url} (no trial has run)"
        ) from None
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        states: dict[str, int] = {}
        for t in study.trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        raise KubeloopError(
            f"tune: no trial of study {study_name!r} completed (trials by state: {states}); "
            "widen tune.search_space, raise tune.epochs, or check the trial logs"
        )
    return dict(study.best_trial.params)
