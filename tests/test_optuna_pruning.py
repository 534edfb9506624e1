"""Pruned Optuna searches (`hydra/sweeper/pruner=...`) with real Optuna storage: the fit's per-epoch report,
what is refused in one line, and pruned trials end to end through `python -m logitlab.sweep` on the local,
joblib and SLURM launchers (study state PRUNED, job.json, the child run FINISHED with where it stopped, the
summary counting them apart, never the best child or the champion)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sklearn.datasets import make_classification

from hydra_plugins.logitlab_optuna_sweeper._study import Pruning, Settings, optimize
from logitlab.errors import TrialPruned
from logitlab.model import LogisticRegression
from logitlab.model._monitor import EpochReporter, reporting
from logitlab.sweeps import trials
from logitlab.tracking import results

from .conftest import logitlab, store_uri
from .test_slurm import slurm_env as project_cluster  # noqa: F401  (a fixture: the cluster, started if down)

# Every trial runs its whole 200 epochs unless pruned (tol=0); the median pruner judges from the second trial.
SEARCH = [
    "sweep",
    "-m",
    "hparams_search=lr_penalty",
    "hydra/sweeper/pruner=median",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.report_every=5",
    "hydra.sweeper.n_trials=4",
    "model.max_iter=200",
    "model.tol=0",
]


def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=400, n_features=6, random_state=0)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.mark.parametrize("score", ["loss", "accuracy"])
def test_a_fit_reports_its_validation_score_every_stride_and_stops_where_told(score: str) -> None:
    X, y, X_val, y_val = data()
    reported: list[tuple[int, float]] = []

    def report(epoch: int, value: float) -> bool:
        reported.append((epoch, value))
        return epoch == 15

    with pytest.raises(TrialPruned) as raised, reporting(EpochReporter(5, score, report)):
        LogisticRegression(max_iter=100, tol=0).fit(X, y, X_val=X_val, y_val=y_val)
    pruned = raised.value
    assert [epoch for epoch, _ in reported] == [5, 10, 15]
    assert (pruned.step, pruned.value) == reported[-1]
    assert len(pruned.cost_history) == len(pruned.val_history) == 15
    # the value is the metric of the model as it was at that epoch: the same fit stopped there scores it
    at_15 = LogisticRegression(max_iter=15, tol=0).fit(X, y, X_val=X_val, y_val=y_val)
    expected = at_15.val_history_[-1] if score == "loss" else at_15.score(X_val, y_val)
    assert pruned.value == pytest.approx(expected, rel=1e-12)
    # outside `reporting`, nothing reports
    assert LogisticRegression(max_iter=20, tol=0).fit(X, y, X_val=X_val, y_val=y_val).n_iter_ == 20


def settings(direction: str, pruner: optuna.pruners.BasePruner) -> Settings:
    return Settings.checked(optuna.samplers.RandomSampler(seed=0), direction, None, "s", 2, 1, None, pruner)


@pytest.mark.parametrize(
    ("metric", "direction", "message"),
    [
        (
            "test_roc_auc",
            "maximize",
            "hydra.sweeper.pruner: a pruner compares a score every trial reports per epoch; sweep.metric="
            "test_roc_auc is computed once per fit; use sweep.metric=val_accuracy or val_log_loss, or pruner=none",
        ),
        (
            "val_log_loss",
            "maximize",
            "hydra.sweeper.direction: maximize for sweep.metric=val_log_loss, which a pruner compares as a loss "
            "(minimize); set sweep.direction=minimize",
        ),
        (
            "cv_roc_auc_mean",
            "maximize",
            "hydra.sweeper.pruner: a pruner compares a score every trial reports per epoch; sweep.metric="
            "cv_roc_auc_mean is computed once per fit; use sweep.metric=cv_accuracy_mean or cv_log_loss_mean, "
            "or pruner=none",
        ),
        (
            "cv_accuracy_mean",
            "minimize",
            "hydra.sweeper.direction: minimize for sweep.metric=cv_accuracy_mean, which a pruner compares as an "
            "accuracy (maximize); set sweep.direction=maximize",
        ),
        (
            ["val_accuracy", "n_iter"],
            "maximize",
            "hydra.sweeper.pruner: optuna does not prune a study with several objectives (sweep.metric is a list); "
            "set hydra/sweeper/pruner=none",
        ),
    ],
)
def test_a_metric_a_pruner_cannot_compare_is_refused_in_one_line(
    metric: str | list[str], direction: str, message: str
) -> None:
    with pytest.raises(HydraException) as raised:
        settings(direction, optuna.pruners.MedianPruner()).per_epoch_score(metric)
    assert str(raised.value) == message


def test_a_streamed_fit_is_pruned_on_its_loss_and_an_accuracy_refused() -> None:
    """A streamed fit computes no validation accuracy per epoch: refused in one line, not a search never pruned."""
    with pytest.raises(HydraException) as raised:
        settings("maximize", optuna.pruners.MedianPruner()).per_epoch_score("val_accuracy", streamed=True)
    assert str(raised.value) == (
        "hydra.sweeper.pruner: a streamed fit (data.chunk_rows) reports its validation loss per epoch, not its "
        "accuracy; use sweep.metric=val_log_loss sweep.direction=minimize, or pruner=none (got "
        "sweep.metric=val_accuracy)"
    )
    assert settings("minimize", optuna.pruners.MedianPruner()).per_epoch_score("val_log_loss", streamed=True) == "loss"


@pytest.mark.parametrize(
    ("metric", "direction", "score"),
    [
        ("val_log_loss", "minimize", "loss"),
        ("cv_log_loss_mean", "minimize", "loss"),
        ("cv_accuracy_mean", "maximize", "accuracy"),
    ],
)
def test_a_cross_validated_mean_is_pruned_on_like_a_validation_score(metric: str, direction: str, score: str) -> None:
    assert settings(direction, optuna.pruners.MedianPruner()).per_epoch_score(metric) == score


def test_storage_is_made_shared_only_for_a_pruned_search(tmp_path: Path) -> None:
    unpruned = settings("maximize", optuna.pruners.NopPruner())
    assert not unpruned.pruning and unpruned.with_shared_storage(str(tmp_path), object()).storage is None
    pruned = settings("maximize", optuna.pruners.MedianPruner()).with_shared_storage(str(tmp_path), object())
    assert pruned.storage == f"journal:///{tmp_path.resolve() / 'optuna.journal'}"
    kept = Settings.checked(
        optuna.samplers.RandomSampler(), "maximize", "sqlite:///kept.db", "s", 2, 1, None, optuna.pruners.NopPruner()
    )
    assert kept.with_shared_storage(str(tmp_path), object()).storage == "sqlite:///kept.db"


def test_a_pruner_on_a_metric_without_epochs_stops_the_sweep_before_any_trial(project: Path) -> None:
    done = logitlab([*SEARCH, "mlflow=off", "sweep.metric=test_accuracy"], project, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: hydra.sweeper.pruner: a pruner compares a score every trial reports per epoch")
    assert not list(project.glob("multirun/*/*/*/job.json"))


def study_of(sweep_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name="lr_penalty", storage=trials.storage(f"journal:///{sweep_dir}/optuna.journal"))


def check_pruned_search(sweep_dir: Path, stderr: str) -> list[optuna.trial.FrozenTrial]:
    """The study holds PRUNED and COMPLETE trials; each pruned trial's job.json says where it stopped, which is
    its last report; reports are every 5 epochs; the summary line counts the pruned ones apart."""
    study = study_of(sweep_dir)
    states = [trial.state for trial in study.trials]
    pruned = [trial for trial in study.trials if trial.state == TrialState.PRUNED]
    assert TrialState.COMPLETE in states and pruned and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    for trial in study.trials:
        assert trial.intermediate_values and all(step % 5 == 0 for step in trial.intermediate_values)
        job = json.loads((sweep_dir / str(trial.number) / "job.json").read_text())
        if trial.state == TrialState.PRUNED:
            last = max(trial.intermediate_values)
            assert job == {"status": "PRUNED", "step": last, "value": trial.intermediate_values[last]}
            assert last < 200
        else:
            assert job["status"] == "FINISHED" and job["metric"] == trial.value
    finished = states.count(TrialState.COMPLETE)
    share = f"{len(pruned) / len(states):.0%}"
    assert f"sweep finished: {finished} jobs finished, {len(pruned)} pruned ({share}), 0 failed" in stderr
    return pruned


class FittingLauncher:
    """Runs each trial's fit in this process as a sweep job does (`sweeps.trials` around the fit, NaN when its
    pruner stopped it): the sweeper, the hand-over and a real SQLite study without a Hydra job's start-up."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir = sweep_dir

    def launch(self, job_overrides: list[tuple[str, ...]], initial_job_idx: int) -> list[JobReturn]:
        X, y, X_val, y_val = data()
        returns = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            C = float(dict(override.split("=") for override in overrides)["C"])
            try:
                with trials.reporting_to_trial(self.sweep_dir, num):
                    model = LogisticRegression(C=C, max_iter=100, tol=0).fit(X, y, X_val=X_val, y_val=y_val)
                value = model.val_history_[-1]
            except TrialPruned:
                value = math.nan
            returns.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=value))
        return returns


def test_the_sweeper_tells_a_trial_its_job_pruned_pruned(tmp_path: Path) -> None:
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1)
    sampler = optuna.samplers.RandomSampler(seed=0)
    plain = Settings.checked(sampler, "minimize", None, "s", 8, 2, None, pruner, 5)
    shared = plain.with_shared_storage(str(tmp_path), FittingLauncher(tmp_path))
    pruning = Pruning(plain.per_epoch_score("val_log_loss"), {"_target_": "optuna.pruners.MedianPruner"})
    optimize(shared, ["C=tag(log, interval(0.0001, 10))"], FittingLauncher(tmp_path), str(tmp_path), None, pruning)
    study = optuna.load_study(study_name="s", storage=trials.storage(shared.storage))
    states = [trial.state for trial in study.trials]
    assert set(states) == {TrialState.COMPLETE, TrialState.PRUNED}, states
    for trial in study.trials:
        last = max(trial.intermediate_values)
        assert sorted(trial.intermediate_values) == list(range(5, last + 1, 5))
        assert (last < 100) == (trial.state == TrialState.PRUNED)
        if trial.state == TrialState.PRUNED:
            assert trial.user_attrs[trials.PRUNED_AT] == [last, trial.intermediate_values[last]]
    assert study.best_trial.state == TrialState.COMPLETE


@pytest.mark.slow
def test_a_pruned_search_prunes_trials_and_says_where_they_stopped(project: Path) -> None:
    done = logitlab([*SEARCH, "mlflow=off", "hydra.sweep.dir=multirun/pruned"], project)
    check_pruned_search(project / "multirun" / "pruned", done.stdout + done.stderr)
    assert f"pruning: the study is kept in journal:///{project.resolve()}/multirun/pruned/optuna.journal" in done.stdout


@pytest.mark.slow
def test_a_tracked_pruned_search_keeps_pruned_children_finished_and_never_best(project: Path) -> None:
    sweep_dir = project / "multirun" / "tracked"
    done = logitlab([*SEARCH, f"hydra.sweep.dir={sweep_dir}"], project)
    pruned = {trial.number: trial for trial in check_pruned_search(sweep_dir, done.stdout + done.stderr)}
    client = MlflowClient(store_uri(project))
    parent_id = json.loads((sweep_dir / "mlflow_parent.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=100
    )
    assert {child.info.status for child in children} == {"FINISHED"}
    for child in children:
        number = int(child.data.tags["hydra_job_num"])
        if number not in pruned:
            assert "logitlab.pruned_at_epoch" not in child.data.tags
            continue
        step = max(pruned[number].intermediate_values)
        assert child.data.tags["logitlab.pruned_at_epoch"] == str(step)
        assert float(child.data.tags["logitlab.pruned_value"]) == pytest.approx(
            pruned[number].intermediate_values[step]
        )
        assert "val_accuracy" not in child.data.metrics  # no final metric to be ranked by
        history = client.get_metric_history(child.info.run_id, "val_loss")
        assert max(point.step for point in history) == step
    assert parent.data.metrics["n_pruned"] == len(pruned)
    assert int(client.get_run(parent.data.tags["best_run_id"]).data.tags["hydra_job_num"]) not in pruned
    table = (sweep_dir / "summary" / "sweep_table.csv").read_text()
    assert table.count(",PRUNED,") == len(pruned)


@pytest.mark.slow
def test_a_pruned_search_on_joblib_reports_from_the_worker_processes(project: Path) -> None:
    sweep_dir = project / "multirun" / "joblib"
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    # trials run two at a time, so fewer have finished when one is judged: a stricter pruner (it keeps the top
    # 25% at each epoch) over 6 trials
    stricter = ["hydra/sweeper/pruner=percentile", "hydra.sweeper.pruner.percentile=25", "hydra.sweeper.n_trials=6"]
    done = logitlab([*SEARCH, *parallel, *stricter, "mlflow=off", f"hydra.sweep.dir={sweep_dir}"], project)
    check_pruned_search(sweep_dir, done.stdout + done.stderr)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_pruned_search_on_slurm_reports_from_the_slurm_jobs(
    project_cluster: dict[str, str],  # noqa: F811  (the fixture imported above)
    project: Path,
) -> None:
    sweep_dir = project / "multirun" / "slurm"
    done = logitlab(
        [*SEARCH, "hydra/launcher=slurm", "mlflow=off", f"hydra.sweep.dir={sweep_dir}"], project, env=project_cluster
    )
    check_pruned_search(sweep_dir, done.stdout + done.stderr)
    assert "reached on the cluster's nodes only if they share it" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("pruner", "report_every", "message"),
    [
        ("median", 10, "hydra.sweeper.pruner: expected an optuna pruner, got str"),
        (None, 0, "hydra.sweeper.report_every: expected an integer >= 1, got 0"),
    ],
)
def test_a_bad_pruning_setting_names_its_key(pruner: object, report_every: int, message: str) -> None:
    with pytest.raises(HydraException) as raised:
        Settings.checked(optuna.samplers.RandomSampler(), "maximize", None, "s", 2, 1, None, pruner, report_every)
    assert str(raised.value) == message


@pytest.mark.slow
def test_a_cross_validated_search_is_pruned_on_the_fold_mean(project: Path) -> None:
    """The 3 folds fitted side by side report their mean held-out loss: with the first trial run whole, the
    TPE draws of seed 42 that follow (degree 3, all three) lag it at epoch 5 and are pruned there."""
    sweep_dir = project / "multirun" / "cv"
    cv = ["preprocess.cv_folds=3", "sweep.metric=cv_log_loss_mean", "sweep.direction=minimize"]
    done = logitlab([*SEARCH, *cv, f"hydra.sweep.dir={sweep_dir}"], project)
    pruned = {trial.number: trial for trial in check_pruned_search(sweep_dir, done.stdout + done.stderr)}
    study = study_of(sweep_dir)
    for trial in study.trials:  # a finished trial's reports: the mean of its folds' held-out loss curves
        if trial.number in pruned:
            continue
        curves = [
            pd.read_csv(sweep_dir / str(trial.number) / "reports" / "cv" / f"fold-{i}-cost_history.csv")
            for i in range(3)
        ]
        means = np.mean([curve["val_loss"].to_numpy() for curve in curves], axis=0)
        assert [trial.intermediate_values[epoch] for epoch in range(5, 201, 5)] == pytest.approx(
            [means[epoch - 1] for epoch in range(5, 201, 5)], rel=0, abs=1e-9
        )  # the csv's 10 decimals
        assert trial.value == pytest.approx(trial.intermediate_values[200], rel=1e-9)  # cv_log_loss_mean
    client = MlflowClient(store_uri(project))
    parent_id = json.loads((sweep_dir / "mlflow_parent.json").read_text())["run_id"]
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    for child in children:  # a pruned child: where it stopped, and its folds' mean curves up to there
        number = int(child.data.tags["hydra_job_num"])
        if number not in pruned:
            continue
        step = max(pruned[number].intermediate_values)
        assert child.data.tags[results.PRUNED_STEP_TAG] == str(step)
        assert float(child.data.tags[results.PRUNED_VALUE_TAG]) == pytest.approx(
            pruned[number].intermediate_values[step], rel=1e-5
        )
        assert "cv_log_loss_mean" not in child.data.metrics
        history = {point.step: point.value for point in client.get_metric_history(child.info.run_id, "val_loss")}
        assert max(history) == step
        assert history[step] == pytest.approx(pruned[number].intermediate_values[step], rel=1e-12)


def test_a_resumed_sweep_runs_a_pruned_job_again(tmp_path: Path) -> None:
    """A pruned child FINISHED without a result: a resume hands its jobs only the children that have one, so a
    trial with a pruned one's params runs (and may be pruned again) instead of being told no value."""
    from logitlab import config
    from logitlab.tracking import resume, store, sweeps

    cfg = config.mlflow_config({"tracking_uri": store_uri(tmp_path), "experiment_name": "resumed"})
    tracker = store.connect(cfg, root=tmp_path)
    assert tracker is not None
    overrides = ["model.C=0.1,1"]
    parent = sweeps.start_sweep(tracker, tmp_path / "sweep", overrides, ["model.C"])
    with sweeps.job_run(parent, tracker, 0, ["model.C=0.1"], {"model": {"C": 0.1}}) as finished:
        tracker.client().log_metric(finished, "val_accuracy", 0.9)
    with sweeps.job_run(parent, tracker, 1, ["model.C=1"], {"model": {"C": 1}}) as pruned:
        results.log_pruned(pruned, TrialPruned(3, 0.6, [0.7, 0.65, 0.6], [0.72, 0.7, 0.68]), "val_accuracy", 100)
    tracker.client().set_terminated(parent.run_id, "KILLED")

    again = resume.resume_sweep(tracker, tmp_path / "again", parent.run_id, overrides, ("val_accuracy",), ["model.C"])
    assert again.finished_jobs == {"model.C=0.1": [0.9]}
    assert tracker.client().get_run(pruned).info.status == "FINISHED", "the pruned trial's run stays as it was"
