"""Real Hydra multiruns tracked in a real MLflow SQLite store: parent, children, histories, models, Optuna."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from logitlab import runs
from logitlab.scoring import ScoringPipeline
from logitlab.sweeps import job as sweep_job

from .conftest import logitlab, make_project, store_uri

pytestmark = pytest.mark.timeout(900)

FAST = ["model.max_iter=300", "model.tol=0"]


def sweep(project: Path, *overrides: str, check: bool = True):
    return logitlab(["sweep", "-m", *overrides], project, check=check)


def runs_of(project: Path, experiment: str) -> tuple[MlflowClient, list, list]:
    client = MlflowClient(store_uri(project))
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} missing"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("logitlab.entry") == "sweep parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def job_dirs(project: Path) -> list[Path]:
    return sorted(p.parent for p in (project / "multirun").glob("*/*/*/reports"))


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("basic") / "project")
    sweep(project, "data=circles", "model.learning_rate=0.1,1", "features.degree=1,2", *FAST)
    return project


def test_one_parent_one_finished_child_per_job(basic_sweep: Path) -> None:
    client, parents, children = runs_of(basic_sweep, "circles")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    default = client.search_runs(["0"])
    assert default == [], "nothing may land in the Default experiment"


def test_children_carry_params_metrics_histories_tags_and_artifacts(basic_sweep: Path) -> None:
    client, _, children = runs_of(basic_sweep, "circles")
    for child in children:
        data = child.data
        assert {"model.learning_rate", "features.degree", "data.name", "seed"} <= set(data.params)
        assert {"train_accuracy", "val_accuracy", "test_accuracy", "test_roc_auc", "test_log_loss"} <= set(data.metrics)
        n_iter = int(data.metrics["n_iter"])
        for key in ("train_loss", "val_loss"):
            history = client.get_metric_history(child.info.run_id, key)
            assert sorted(m.step for m in history) == list(range(1, n_iter + 1)), key
        assert {"git_commit", "git_dirty", "data_hash", "hydra_overrides", "logitlab.sweep_id"} <= set(data.tags)
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "metrics.json", "coefficients.csv", "cost_history.csv", "plots"} <= artifacts
        assert {"roc.csv", "pr.csv", "confusion.csv", "calibration.csv"} <= {
            Path(a.path).name for a in client.list_artifacts(child.info.run_id, "plots")
        }
        weights = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "weights")}
        assert {"model.npz", "model.json", "transforms.json"} <= weights
        samples = {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "samples")}
        assert samples == {"input_example.parquet", "test_points.parquet"}


FIGURES = {
    "loss_curve.png",
    "roc.png",
    "precision_recall.png",
    "confusion.png",
    "calibration.png",
    "coefficients.png",
    "decision_boundary.png",
}


def test_figures_and_the_model_go_to_the_best_child_and_the_parent_only(basic_sweep: Path) -> None:
    """`mlflow.child_artifacts: best` (the default): the other children carry no PNG and no pyfunc model."""
    client, parents, children = runs_of(basic_sweep, "circles")
    parent = parents[0]
    best = parent.data.tags["best_run_id"]
    for run in [*children, parent]:
        run_id = run.info.run_id
        figures = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
        models = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
        if run_id == best:
            assert figures == FIGURES and len(models) == 1
            assert run.data.tags["logitlab.model_id"] == models[0].model_id
        elif run is parent:  # the best child's figures, and its model linked as an output of the parent
            assert (
                figures == FIGURES
                and run.data.tags["logitlab.model_id"] == client.get_run(best).data.tags["logitlab.model_id"]
            )
            assert [output.model_id for output in run.outputs.model_outputs] == [run.data.tags["logitlab.model_id"]]
        else:
            assert not figures and not models and "logitlab.model_id" not in run.data.tags


def test_parent_carries_best_child_table_and_comparison(basic_sweep: Path) -> None:
    client, parents, children = runs_of(basic_sweep, "circles")
    parent = parents[0]
    best = max(children, key=lambda r: r.data.metrics["val_accuracy"])
    assert parent.data.metrics["val_accuracy"] == best.data.metrics["val_accuracy"]
    assert parent.data.params["features.degree"] == best.data.params["features.degree"] == "2"
    assert parent.data.tags["best_run_id"] in {c.info.run_id for c in children}
    names = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep_table.csv", "sweep_table.html", "sweep_comparison.png"} <= names
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "sweep/sweep_table.csv"))
    assert len(table) == 4 and set(table["status"]) == {"FINISHED"}
    assert table["rank"].tolist() == [1, 2, 3, 4] and table["run_id"].iloc[0] == parent.data.tags["best_run_id"]
    assert table["val_accuracy"].is_monotonic_decreasing, "best first"
    html = Path(client.download_artifacts(parent.info.run_id, "sweep/sweep_table.html")).read_text()
    assert "ranked by val_accuracy" in html and html.index(table["run_name"].iloc[0]) < html.index(
        table["run_name"].iloc[-1]
    )


def test_children_are_named_by_what_the_sweep_varies_and_record_their_dataset(basic_sweep: Path) -> None:
    _, _, children = runs_of(basic_sweep, "circles")
    names = sorted(c.info.run_name for c in children)
    assert names == ["lr=0.1 degree=1", "lr=0.1 degree=2", "lr=1 degree=1", "lr=1 degree=2"]
    for child in children:
        assert child.data.tags["hydra_overrides"].startswith("data=circles model.learning_rate=")  # the full overrides
        (given,) = child.inputs.dataset_inputs
        assert given.dataset.name == "circles" and given.dataset.digest == child.data.tags["data_hash"]
        assert json.loads(given.dataset.profile) == {
            "num_rows": 1000,
            "train_rows": 600,
            "val_rows": 200,
            "test_rows": 200,
        }
        assert [tag.value for tag in given.tags] == ["training"]


def test_logged_model_scores_raw_rows_like_the_evaluate_stage(basic_sweep: Path) -> None:
    """The best child's model as the sweep logged it, the others' as `logitlab.runs model` adds them."""
    mlflow.set_tracking_uri(store_uri(basic_sweep))
    _, _, children = runs_of(basic_sweep, "circles")
    for job in job_dirs(basic_sweep):
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        child = next(c for c in children if c.data.tags["hydra_job_num"] == job.name)
        runs.add_model(child.info.run_id)
        pipeline = ScoringPipeline.load(job / "models")
        raw = pd.DataFrame({"x0": np.linspace(-1, 1, 25), "x1": np.linspace(1, -1, 25)})
        served = mlflow.pyfunc.load_model(f"runs:/{child.info.run_id}/model").predict(raw)
        np.testing.assert_allclose(served["probability"].to_numpy(), pipeline.predict_proba(raw), rtol=0, atol=1e-12)
        metrics = json.loads((job / "reports" / "metrics.json").read_text())
        assert metrics["test_accuracy"] == child.data.metrics["test_accuracy"], overrides


def test_upstream_stages_run_once_per_distinct_config(basic_sweep: Path) -> None:
    cache = basic_sweep / ".cache" / "logitlab"
    assert len(list((cache / "ingest").iterdir())) == 1
    assert len(list((cache / "preprocess").iterdir())) == 1
    assert len(list((cache / "feature-engineer").iterdir())) == 2  # degree 1 and 2; learning rate is downstream


def test_best_model_is_registered_as_champion_and_moves_only_when_beaten(basic_sweep: Path) -> None:
    client = MlflowClient(store_uri(basic_sweep))
    champion = client.get_model_version_by_alias("logitlab-circles", "champion")
    _, parents, _ = runs_of(basic_sweep, "circles")
    assert champion.run_id == parents[0].data.tags["best_run_id"]
    sweep(basic_sweep, "data=circles", "model.learning_rate=0.1", "features.degree=1", *FAST)  # worse
    assert client.get_model_version_by_alias("logitlab-circles", "champion").version == champion.version


def test_a_diverging_job_fails_alone(project: Path) -> None:
    done = sweep(project, "data=moons", "model.learning_rate=0.5,1e7", *FAST)
    assert "diverged" in done.stdout + done.stderr
    _, parents, children = runs_of(project, "moons")
    by_lr = {c.data.params["model.learning_rate"]: c for c in children}
    assert by_lr["0.5"].info.status == "FINISHED"
    failed = by_lr["10000000.0"]
    assert failed.info.status == "FAILED"
    assert "learning_rate" in failed.data.tags["error"] and "smaller" in failed.data.tags["error"]
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["n_failed"] == 1


def test_an_invalid_value_is_a_failed_child_counted_in_the_summary(project: Path) -> None:
    done = sweep(project, "data=moons", "model.solver=gd,bogus", *FAST)
    assert "sweep finished: 1 jobs finished, 1 failed" in done.stdout + done.stderr
    client, parents, children = runs_of(project, "moons")
    by_solver = {c.data.params["model.solver"]: c for c in children}
    assert by_solver["gd"].info.status == "FINISHED"
    failed = by_solver["bogus"]
    assert failed.info.status == "FAILED" and "config key 'model.solver'" in failed.data.tags["error"]
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["n_failed"] == 1
    table = pd.read_csv(client.download_artifacts(parents[0].info.run_id, "sweep/sweep_table.csv"))
    assert table["status"].tolist() == ["FINISHED", "FAILED"]  # ranked: the failed job last


@pytest.mark.parametrize("tracking", ["mlflow.enabled=true", "mlflow=off"])
def test_a_sweep_in_which_no_job_finished_exits_non_zero_with_one_line(project: Path, tracking: str) -> None:
    done = sweep(project, "model.max_iter=abc,xyz", tracking, check=False)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "none of its 2 jobs finished" in errors[0] and "model.max_iter" in errors[0], errors
    for noise in ("Traceback", "Warning", "warnings.warn"):
        assert noise not in done.stdout + done.stderr
    if tracking == "mlflow=off":
        assert not (project / "mlflow.db").exists()
        return
    _, parents, children = runs_of(project, "synthetic")
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["n_failed"] == 2


@pytest.mark.parametrize("tracking", ["mlflow.enabled=true", "mlflow=off"])
def test_a_fit_that_did_not_converge_is_a_log_line_a_tag_and_one_summary_line(project: Path, tracking: str) -> None:
    """The estimator's ConvergenceWarning is logged, not printed as a Python warning; each run says whether it
    converged (the tag), and the summary says so once when the best job did not (on moons the 3-epoch fit has the
    lower validation loss)."""
    overrides = ["data=moons", "model.max_iter=3,4000", "sweep.metric=val_log_loss", "sweep.direction=minimize"]
    done = sweep(project, *overrides, tracking)
    printed = (done.stdout + done.stderr).splitlines()
    (logged,) = [line for line in printed if "did not converge after" in line]
    assert "[logitlab.stages.train][WARNING] - LogisticRegression(solver='gd') did not converge after 3 " in logged
    assert not [line for line in printed if "ConvergenceWarning" in line or "warnings.warn" in line]
    summary = [line for line in printed if "the best job did not converge" in line]
    assert len(summary) == 1 and "in its 3 epochs" in summary[0] and "val_log_loss" in summary[0], summary
    if tracking == "mlflow=off":
        return
    _, _, children = runs_of(project, "moons")
    tags = {c.data.params["model.max_iter"]: c.data.tags["logitlab.converged"] for c in children}
    assert tags == {"3": "false", "4000": "true"}


def test_an_untracked_sweep_names_its_best_job_and_draws_its_figures_alone(project: Path) -> None:
    """The best so far, once a job has not beaten it, is drawn while the jobs run (`finishing.draw_ahead`); a
    job that a later one beats loses its figures again, so that only the best job's folder has them."""
    Cs = "model.C=1,0.01,0.001"  # on moons the strongest penalty scores best
    done = sweep(project, "mlflow=off", "data=moons", Cs, "hydra.sweep.dir=multirun/off", *FAST)
    (line,) = [line for line in (done.stdout + done.stderr).splitlines() if "sweep finished:" in line]
    best = re.search(r"best val_accuracy = ([0-9.]+) \(job (\d+) in ", line)
    assert best, line
    jobs = {job["job"]: job["metric"] for job in sweep_job.outcomes(project / "multirun/off")}
    assert float(best[1]) == pytest.approx(max(jobs.values()), abs=1e-4) and jobs[best[2]] == max(jobs.values())
    # run in increasing C (`path_order`): job 2 first, the best throughout, drawn once job 1 did not beat it
    assert jobs["0"] < jobs["1"] < jobs["2"], jobs
    drawn = {
        job: sorted(p.name for p in (project / "multirun/off" / job).glob("reports/figures/*.png")) for job in jobs
    }
    assert drawn == {job: sorted(FIGURES) if job == best[2] else [] for job in jobs}, drawn
    assert "failed" not in done.stderr


def test_a_job_hydra_cannot_compose_stops_the_sweep_before_any_job_in_one_line(project: Path) -> None:
    done = sweep(project, "data=circles,nope", *FAST, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data/nope" in errors[0] and "circles" in errors[0], errors
    _, parents, children = runs_of(project, "synthetic")
    assert not children and parents[0].info.status == "FAILED"


def test_joblib_launcher_children_nest_under_one_parent(project: Path) -> None:
    sweep(project, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.learning_rate=0.05,0.1,0.2", *FAST)
    _, parents, children = runs_of(project, "synthetic")
    assert len(parents) == 1 and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert all(c.info.status == "FINISHED" for c in children)
    misses = [json.loads(c.data.tags["upstream_cache"])["ingest"] for c in children].count("miss")
    assert misses == 1, "parallel workers must ingest once and share the result"


def test_optuna_study_persists_resumes_and_tells_failed_trials(project: Path) -> None:
    """The project's Optuna sweeper on optuna >= 4: a study in SQLite, a diverging trial told FAILED, and the same
    command run again resuming the study (its trials numbered on, one more MLflow parent)."""
    import optuna

    storage = f"sqlite:///{project / 'optuna.db'}"
    command = [
        "hparams_search=lr_penalty",
        "hydra.sweeper.n_trials=3",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.sampler.seed=6",  # its first trials: 0.5, 1e9, 0.5
        "model.learning_rate=choice(0.5,1e9)",  # 1e9 diverges: the job fails, the sweep goes on
        *FAST,
    ]
    sweep(project, *command)
    done = sweep(project, *command)
    assert "resumed with 3 earlier trials" in done.stdout + done.stderr
    study = optuna.load_study(study_name="lr_penalty", storage=storage)
    assert [t.number for t in study.trials] == list(range(6))
    for trial in study.trials:
        diverged = trial.params["model.learning_rate"] == 1e9
        assert trial.state == (optuna.trial.TrialState.FAIL if diverged else optuna.trial.TrialState.COMPLETE)
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE}
    _, parents, children = runs_of(project, "synthetic")
    assert len(parents) == 2 and len(children) == 6
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(c.data.metrics["val_accuracy"] for c in finished) == sorted(
        t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
    )
    (results,) = sorted(project.glob("multirun/*/*/optimization_results.yaml"))[-1:]
    assert f"best_value: {study.best_value}" in results.read_text()


@pytest.mark.slow
def test_submitit_local_launcher(project: Path) -> None:
    sweep(project, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "model.learning_rate=0.1,1", *FAST)
    _, parents, children = runs_of(project, "synthetic")
    assert len(parents) == 1 and len(children) == 2 and all(c.info.status == "FINISHED" for c in children)


def test_single_run_is_a_top_level_run(project: Path) -> None:
    logitlab(["sweep", "data=moons", *FAST], project)
    _, parents, children = runs_of(project, "moons")
    client = MlflowClient(store_uri(project))
    runs = client.search_runs([client.get_experiment_by_name("moons").experiment_id])
    assert len(runs) == 1 and not parents and not children and runs[0].info.status == "FINISHED"


def test_tracking_off_never_imports_mlflow(project: Path) -> None:
    probe = (
        "import atexit, sys, runpy\n"
        "atexit.register(lambda: print('MLFLOW_IMPORTED' if 'mlflow' in sys.modules else 'MLFLOW_ABSENT'))\n"
        "sys.argv = ['logitlab.sweep', '-m', 'mlflow=off', 'model.learning_rate=0.1,1', 'model.max_iter=50']\n"
        "runpy.run_module('logitlab.sweep', run_name='__main__')\n"
    )
    import sys

    from .conftest import run

    done = run([sys.executable, "-c", probe], project)
    assert "MLFLOW_ABSENT" in done.stdout
    assert not (project / "mlflow.db").exists()


def test_long_histories_are_thinned_in_the_metric_store_and_whole_in_the_artifact(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    logitlab(["sweep", "data=circles", "model.max_iter=2500", "model.tol=0", "mlflow.history_points=100"], project)
    client, _, _ = runs_of(project, "circles")
    (run,) = client.search_runs([client.get_experiment_by_name("circles").experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert len(steps) == 100 and min(steps) == 1 and max(steps) == 2500
    local = Path(client.download_artifacts(run.info.run_id, "cost_history.csv", str(tmp_path)))
    assert pd.read_csv(local)["epoch"].tolist() == list(range(1, 2501))


def test_a_multiclass_sweep_tracks_ranks_and_registers(project: Path) -> None:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    X.assign(cultivar=np.array(["barolo", "grignolino", "barbera"])[y]).to_csv(
        project / "data/raw/external/wine.csv", index=False
    )
    data = ["data=csv", "data.path=data/raw/external/wine.csv", "data.target=cultivar"]
    sweep(project, *data, "model.C=0.01,1", "sweep.metric=test_f1_macro")
    client, parents, children = runs_of(project, "csv")
    assert len(children) == 2 and all(c.info.status == "FINISHED" for c in children)
    assert {c.data.tags["logitlab.task"] for c in children} == {"multiclass"}
    best = max(children, key=lambda c: c.data.metrics["test_f1_macro"])
    assert parents[0].data.tags["best_run_id"] == best.info.run_id
    champion = client.get_model_version_by_alias("logitlab-csv", "champion")
    mlflow.set_tracking_uri(store_uri(project))
    served = mlflow.pyfunc.load_model("models:/logitlab-csv@champion").predict(X.head(5))
    assert list(served.columns) == ["label", "probability_barbera", "probability_barolo", "probability_grignolino"]
    assert champion.run_id == best.info.run_id and set(served["label"]) == {"barolo"}


def test_optuna_maximises_the_cross_validated_accuracy_on_sonar(project: Path, sonar: Path) -> None:
    done = sweep(
        project,
        "data=sonar",
        f"data.path={sonar}",
        "preprocess.cv_folds=3",
        "hparams_search=lr_penalty",
        "features.degree=choice(1,2)",  # degree 3 on Sonar's 60 columns exceeds features.max_features
        "hydra.sweeper.n_trials=3",
        "sweep.metric=cv_accuracy_mean",
        *FAST,
    )
    _, parents, children = runs_of(project, "sonar")
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert len(children) == len(finished) == 3, done.stdout[-2000:]
    best = max(finished, key=lambda c: (c.data.metrics["cv_accuracy_mean"], -c.data.metrics["cv_log_loss_mean"]))
    assert parents[0].data.tags["best_run_id"] == best.info.run_id
    assert parents[0].data.metrics["cv_accuracy_mean"] == best.data.metrics["cv_accuracy_mean"]
    assert all(c.data.tags["logitlab.cv_folds"] == "3" for c in finished)
    # Reading and splitting into folds happen once per sweep: only the first job misses the preprocess cache.
    misses = [json.loads(c.data.tags["upstream_cache"])["preprocess"] for c in finished]
    assert misses.count("miss") <= 1 and len(list((project / ".cache/logitlab/preprocess").iterdir())) == 1


# What differs between two sweeps of the same jobs: ids, the cache's hits, where the model was logged from
PER_SWEEP_TAGS = {"logitlab.sweep_id", "mlflow.parentRunId", "upstream_cache", "logitlab.model_id"}


def test_on_a_local_store_the_helper_makes_each_jobs_run_as_a_worker_makes_its_own(project: Path) -> None:
    """On a local store the figure helper makes the jobs' runs from what each job hands over (`sweeps.relay`); a
    joblib worker makes its job's run in line. The same two jobs give the same children (params, metrics and
    curves, tags, artifacts, dataset), and a relayed child's start and end are its job's."""
    grid = ["model.learning_rate=0.05,0.2", *FAST]
    relayed_dir, inline_dir = project / "multirun" / "relayed", project / "multirun" / "inline"
    sweep(project, *grid, f"hydra.sweep.dir={relayed_dir}")
    sweep(project, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *grid, f"hydra.sweep.dir={inline_dir}")
    client, parents, children = runs_of(project, "synthetic")
    assert len(parents) == 2 and len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    relayed_parent = json.loads((relayed_dir / "mlflow_parent.json").read_text())["run_id"]
    made = {
        (child.data.tags["mlflow.parentRunId"] == relayed_parent, child.data.params["model.learning_rate"]): child
        for child in children
    }
    for rate in ("0.05", "0.2"):
        relayed, inline = made[True, rate], made[False, rate]
        pair = (relayed, inline)
        assert relayed.data.params == inline.data.params
        metrics = [{k: v for k, v in run.data.metrics.items() if k != "fit_time_s"} for run in pair]
        assert metrics[0] == metrics[1]
        curves = [[m.value for m in client.get_metric_history(run.info.run_id, "train_loss")] for run in pair]
        assert curves[0] == curves[1] and len(curves[0]) == 300
        tags = [{k: v for k, v in run.data.tags.items() if k not in PER_SWEEP_TAGS} for run in pair]
        assert tags[0] == tags[1]
        artifacts = [sorted(a.path for a in client.list_artifacts(run.info.run_id)) for run in pair]
        assert artifacts[0] == artifacts[1]
        datasets = [[(d.dataset.name, d.dataset.digest) for d in run.inputs.dataset_inputs] for run in pair]
        assert datasets[0] == datasets[1] and len(datasets[0]) == 1
        job_dir = relayed_dir / relayed.data.tags["hydra_job_num"]
        started = (job_dir / ".hydra" / "config.yaml").stat().st_mtime_ns // 1_000_000
        reported = (job_dir / "reports" / "metrics.json").stat().st_mtime_ns // 1_000_000
        assert started <= relayed.info.start_time <= reported <= relayed.info.end_time
