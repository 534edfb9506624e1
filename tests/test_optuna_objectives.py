"""Several objectives (`sweep.metric` and `sweep.direction` lists): the config's one-line refusals, the Pareto
front in numpy, and real sweeps through `python -m logitlab.sweep` (real Optuna storage, a real MLflow SQLite
store): the study's directions and best trials, the parent's Pareto front table and figure, the study's figures,
the champion by each rule (`sweep.champion`), on a grid and on the local, joblib and SLURM launchers."""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from logitlab import config
from logitlab.errors import ConfigError
from logitlab.tracking import selection

from .conftest import logitlab, make_project, store_uri
from .test_slurm import slurm_env as project_cluster  # noqa: F401  (a fixture: the cluster, started if down)

OBJECTIVES = ["sweep.metric=[val_accuracy,n_nonzero_coef]", "sweep.direction=[maximize,minimize]"]
METRICS, DIRECTIONS = ("val_accuracy", "n_nonzero_coef"), ("maximize", "minimize")
# Few short trials on degree 2 or 3 features, where L1 zeroes some weights: the two objectives pull apart.
SEARCH = [
    "sweep",
    "-m",
    "hparams_search=lr_penalty",
    *OBJECTIVES,
    "hydra.sweeper.n_trials=6",
    "features.degree=choice(2, 3)",  # the command line replaces the search's own space for these keys
    "model.C=tag(log, interval(0.001, 10.0))",
    "model.penalty=l1",
    "data.n_samples=300",
    "model.max_iter=300",
]
VIEWS = ("history", "importances", "parallel_coordinates")


# ------------------------------------------------------------------------------------------- the config
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"metric": ["val_accuracy", "n_nonzero_coef"], "direction": "maximize"},
            "config key 'sweep.direction': expected one direction per metric (2: val_accuracy, n_nonzero_coef), "
            "got 'maximize'",
        ),
        (
            {"metric": ["val_accuracy"], "direction": ["maximize", "minimize"]},
            "config key 'sweep.direction': expected one direction per metric (1: val_accuracy), "
            "got ['maximize', 'minimize']",
        ),
        (
            {"metric": ["val_accuracy", "val_acuracy"], "direction": ["maximize", "maximize"]},
            "config key 'sweep.metric': 'val_acuracy' is not a metric; choose one of",
        ),
        (
            {"metric": ["val_accuracy", "val_accuracy"], "direction": ["maximize", "maximize"]},
            "config key 'sweep.metric': expected each metric once, got 'val_accuracy' twice",
        ),
        (
            {"metric": ["val_accuracy", "fit_time_s"], "direction": ["maximize", "fast"]},
            "config key 'sweep.direction': expected maximize|minimize, got 'fast'",
        ),
        ({"metric": []}, "config key 'sweep.metric': expected a name or a list of names, got []"),
        ({"champion": "best"}, "config key 'sweep.champion': expected first|balanced, got 'best'"),
    ],
)
def test_a_bad_objective_is_refused_in_one_line_naming_its_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config.sweep_config(raw)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_a_list_of_one_is_one_objective_and_the_first_objective_is_the_metric() -> None:
    one = config.sweep_config({"metric": ["val_log_loss"], "direction": ["minimize"]})
    assert one == config.sweep_config({"metric": "val_log_loss", "direction": "minimize"})
    assert (one.metric, one.direction, one.several, one.champion) == ("val_log_loss", "minimize", False, "first")
    two = config.sweep_config({"metric": ["fit_time_s", "val_accuracy"], "direction": ["minimize", "maximize"]})
    assert (two.metrics, two.directions, two.metric, two.direction) == (
        ("fit_time_s", "val_accuracy"),
        ("minimize", "maximize"),
        "fit_time_s",
        "minimize",
    )
    assert two.several


def test_non_dominated_rows_are_the_pareto_front_of_minimised_columns() -> None:
    costs = np.array([[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [5.0, 1.0], [2.0, 2.0], [1.0, 6.0]])
    # [3, 3] is dominated by [2, 2]; [1, 6] by [1, 5]; the two equal [2, 2] dominate neither the other
    assert selection.non_dominated(costs).tolist() == [True, True, False, True, True, False]


# ----------------------------------------------------------------------------- what the test expects
def children(project: Path, sweep_dir: Path) -> tuple[MlflowClient, Run, list[Run]]:
    client = MlflowClient(store_uri(project))
    parent = client.get_run(json.loads((sweep_dir / "mlflow_parent.json").read_text())["run_id"])
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return client, parent, list(runs)


def points(runs: list[Run]) -> dict[str, tuple[float, float]]:
    """Each finished child's (val_accuracy, n_nonzero_coef), by run id."""
    return {
        run.info.run_id: (run.data.metrics["val_accuracy"], run.data.metrics["n_nonzero_coef"])
        for run in runs
        if run.info.status == "FINISHED"
    }


def expected_front(scored: dict[str, tuple[float, float]]) -> set[str]:
    """The children no other child beats: at least as accurate with as few weights, and better in one."""
    return {
        run_id
        for run_id, (acc, nnz) in scored.items()
        if not any(a >= acc and n <= nnz and (a > acc or n < nnz) for a, n in scored.values())
    }


def expected_first(runs: list[Run]) -> str:
    """The most accurate child, ties to the fewest weights, then the lower val_log_loss, then the earlier."""
    finished = [run for run in runs if run.info.status == "FINISHED"]
    best = min(
        finished,
        key=lambda r: (
            -r.data.metrics["val_accuracy"],
            r.data.metrics["n_nonzero_coef"],
            r.data.metrics["val_log_loss"],
            r.info.start_time,
        ),
    )
    return best.info.run_id


def expected_balanced(runs: list[Run]) -> str:
    """The front's child nearest (max accuracy, min weights) once both are scaled to [0, 1] over the front."""
    scored = points(runs)
    front = {run_id: scored[run_id] for run_id in expected_front(scored)}
    accs, nnzs = [a for a, _ in front.values()], [n for _, n in front.values()]

    def scaled(value: float, low: float, high: float) -> float:
        return (value - low) / (high - low) if high > low else 0.0

    distance = {
        run_id: math.hypot(scaled(max(accs) - acc, 0, max(accs) - min(accs)), scaled(nnz, min(nnzs), max(nnzs)))
        for run_id, (acc, nnz) in front.items()
    }
    nearest = min(distance.values())
    ties = [run for run in runs if run.info.run_id in distance and math.isclose(distance[run.info.run_id], nearest)]
    return expected_first(ties)


def check_parent(client: MlflowClient, parent: Run, runs: list[Run], rule: str) -> None:
    """The parent's Pareto front table holds exactly the non-dominated children; the figure and the study's
    figures are its artifacts; its champion is the rule's."""
    assert parent.info.status == "FINISHED"
    local = client.download_artifacts(parent.info.run_id, "sweep/pareto_front.csv")
    with open(local, newline="") as fh:
        rows = list(csv.DictReader(fh))
    scored = points(runs)
    assert {row["run_id"] for row in rows} == expected_front(scored) != set()
    for row in rows:
        assert (float(row["val_accuracy"]), float(row["n_nonzero_coef"])) == scored[row["run_id"]]
    sweep_files = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"pareto_front.png", "pareto_front.csv", "sweep_table.csv"} <= sweep_files
    assert parent.data.tags["logitlab.champion_rule"] == rule
    expected = expected_balanced(runs) if rule == "balanced" else expected_first(runs)
    assert parent.data.tags["best_run_id"] == expected
    assert parent.data.metrics["n_pruned"] == 0
    for run in runs:  # the job's own metrics: the fit's wall time is an objective a sweep may take
        assert run.data.metrics["fit_time_s"] > 0


def check_study(sweep_dir: Path, storage: str, trials: int) -> optuna.Study:
    """The study has both directions, its best trials are the front, and each job.json holds both values."""
    study = optuna.load_study(study_name="lr_penalty", storage=storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) == trials
    best = {tuple(t.values) for t in study.best_trials}
    values = {t.number: tuple(t.values) for t in completed}
    front = {v for v in values.values() if not any(o[0] >= v[0] and o[1] <= v[1] and o != v for o in values.values())}
    assert best == front
    for number, both in values.items():
        job = json.loads((sweep_dir / str(number) / "job.json").read_text())
        assert job["status"] == "FINISHED" and tuple(job["values"]) == both and job["metric"] == both[0]
    results = (sweep_dir / "optimization_results.yaml").read_text()
    assert "solutions:" in results and results.count("number:") == len(study.best_trials)
    drawn = {path.name for path in (sweep_dir / "optuna").glob("*.png")}
    assert drawn == {f"{view}-{metric}.png" for view in VIEWS for metric in METRICS}
    return study


# ------------------------------------------------------------------------------------------ real sweeps
@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """One tracked two-objective Optuna search (local launcher, SQLite study): the project, sweep folder, study."""
    project = make_project(tmp_path_factory.mktemp("objectives"))
    sweep_dir = project / "multirun" / "search"
    storage = f"sqlite:///{project / 'optuna.db'}"
    logitlab([*SEARCH, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}"], project)
    return project, sweep_dir, storage


def test_a_two_objective_search_keeps_its_pareto_front_and_the_first_champion(searched: tuple[Path, Path, str]) -> None:
    project, sweep_dir, storage = searched
    check_study(sweep_dir, storage, trials=6)
    client, parent, runs = children(project, sweep_dir)
    assert len(runs) == 6
    check_parent(client, parent, runs, "first")
    study_files = {Path(f.path).name for f in client.list_artifacts(parent.info.run_id, "optuna")}
    assert study_files == {f"{view}-{metric}.png" for view in VIEWS for metric in METRICS}


def test_the_balanced_rule_picks_the_front_point_nearest_the_utopia_point(searched: tuple[Path, Path, str]) -> None:
    project, sweep_dir, _ = searched
    _, _, runs = children(project, sweep_dir)
    rule = config.sweep_config({"metric": list(METRICS), "direction": list(DIRECTIONS), "champion": "balanced"})
    chosen = selection.best_run(runs, rule)
    assert chosen is not None and chosen.info.run_id == expected_balanced(runs)
    assert chosen.info.run_id in expected_front(points(runs))


def test_a_grid_sweep_ranks_a_metric_list_by_the_balanced_rule(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    sweep_dir = project / "multirun" / "grid"
    grid = ["model.C=0.01,0.1,1,10", "model.penalty=l1", "features.degree=3", "data.n_samples=300"]
    done = logitlab(
        ["sweep", "-m", *grid, *OBJECTIVES, "sweep.champion=balanced", f"hydra.sweep.dir={sweep_dir}"], project
    )
    assert "best by balanced of val_accuracy, n_nonzero_coef: val_accuracy" in done.stdout + done.stderr
    client, parent, runs = children(project, sweep_dir)
    assert len(runs) == 4
    check_parent(client, parent, runs, "balanced")
    assert not (sweep_dir / "optuna").exists()  # a grid has no study


@pytest.mark.slow
def test_a_two_objective_search_on_joblib_tells_both_values_from_the_workers(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    sweep_dir = project / "multirun" / "joblib"
    storage = f"sqlite:///{project / 'optuna.db'}"
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2"]
    logitlab([*SEARCH, *parallel, f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}"], project)
    check_study(sweep_dir, storage, trials=6)
    client, parent, runs = children(project, sweep_dir)
    check_parent(client, parent, runs, "first")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_two_objective_search_on_slurm_tells_both_values_from_the_slurm_jobs(
    project_cluster: dict[str, str],  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path)
    sweep_dir = project / "multirun" / "slurm"
    storage = f"sqlite:///{project / 'optuna.db'}"
    logitlab(
        [*SEARCH, "hydra/launcher=slurm", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep_dir}"],
        project,
        env=project_cluster,
    )
    check_study(sweep_dir, storage, trials=6)
    client, parent, runs = children(project, sweep_dir)
    check_parent(client, parent, runs, "first")


@pytest.mark.slow
def test_the_tutorials_pareto_front_is_what_its_command_leaves(tmp_path: Path) -> None:
    """docs/tutorial.md's several-objectives search, run as quoted: its front table and its summary lines."""
    from .conftest import REPO

    tutorial = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
    text = tutorial[tutorial.index("### Several objectives") :]
    text = text[: text.index("\n## ")]
    command = re.search(r"```bash\npython -m logitlab\.(.*?)```", text, re.S)
    assert command, "the section lost its command"
    project = make_project(tmp_path)
    done = logitlab(shlex.split(command.group(1).replace("\\\n", " ")), project)
    printed = done.stdout + done.stderr
    fenced = re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
    summary = next(block for language, block in fenced if not language and "Pareto front" in block)
    for line in summary.splitlines():
        assert line.split(" (run ")[0] in printed, line
    (sweep_dir,) = [path.parent for path in project.glob("multirun/*/*/mlflow_parent.json")]
    with open(sweep_dir / "summary" / "pareto_front.csv", newline="") as fh:
        front = list(csv.DictReader(fh))
    quoted = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ") and "run_id" not in line
    ]
    assert len(quoted) == len(front)
    for (_, job, degree, c, accuracy, nonzero), row in zip(quoted, front, strict=True):  # run ids differ per run
        assert (job, degree, accuracy, nonzero) == (
            row["job"],
            row["features.degree"],
            f"{float(row['val_accuracy']):g}",
            row["n_nonzero_coef"],
        )
        assert c == f"{float(row['model.C']):.3g}"


@pytest.mark.parametrize("objectives", [["val_accuracy"], ["val_accuracy", "n_nonzero_coef"]])
def test_the_study_figures_of_a_few_equal_trials_are_drawn_without_a_warning(
    objectives: list[str], tmp_path: Path
) -> None:
    """Trials of one value fall in one quantile: optuna warns that the importances are equal, which the
    figure's equal bars already say; a sweep's output carries no warning a user cannot act on."""
    import warnings

    from hydra_plugins.logitlab_optuna_sweeper._study import write_figures

    def objective(trial: optuna.Trial) -> list[float]:
        trial.suggest_float("C", 0.1, 1)
        trial.suggest_int("degree", 1, 3)
        return [0.5, 3.0][: len(objectives)]

    directions = ["maximize", "minimize"][: len(objectives)]
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_figures(study, tmp_path, objectives)
    several = len(objectives) > 1
    expected = {f"{view}-{name}.png" if several else f"{view}.png" for view in VIEWS for name in objectives}
    assert {p.name for p in tmp_path.glob("*.png")} == expected
