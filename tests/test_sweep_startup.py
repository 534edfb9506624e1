"""A sweep's start-up and exit, asserted by what the launching process holds rather than by timing: its launch
path imports none of the libraries only a job's fit, its figures or its summary use, and the figure helper has
exited once the sweep is summarised (the process then ends at once). docs/performance.md has the times."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from .conftest import run, store_uri
from .probe_callback import HEAVY

TINY = ["data=circles", "model.max_iter=20", "model.tol=0", "model.C=0.1,1"]


# `python -m logitlab.sweep`, then the child processes still alive when the sweep's code has returned (before the
# interpreter's exit would join a helper left running)
SWEEP_THEN_CHILDREN = (
    "import json, multiprocessing, runpy, sys\n"
    "sys.argv = ['logitlab.sweep', *sys.argv[1:]]\n"
    "runpy.run_module('logitlab.sweep', run_name='__main__')\n"
    "print('CHILDREN', json.dumps([child.name for child in multiprocessing.active_children()]))\n"
    "print('LOADED', json.dumps(sorted(m for m in ('matplotlib', 'mlflow', 'sklearn') if m in sys.modules)))\n"
)


def probed_sweep(project: Path, *overrides: str) -> dict:
    """The libraries loaded as each job started, and the child processes left after the sweep."""
    out = project / "probe.json"
    probe = ["+hydra.callbacks.probe._target_=tests.probe_callback.ProbeCallback", f"+hydra.callbacks.probe.out={out}"]
    command = [sys.executable, "-c", SWEEP_THEN_CHILDREN, "-m", *TINY, *overrides, *probe]
    done = run(command, project, env={"PYTHONPATH": str(project)})
    lines = done.stdout.splitlines()
    children = next(line for line in lines if line.startswith("CHILDREN "))
    loaded = next(line for line in lines if line.startswith("LOADED "))
    probed = json.loads(out.read_text())
    return {
        "loaded_at_job_start": probed["loaded"],
        "frozen_at_job_start": probed["frozen"],
        "huge_pages_at_last_job_start": probed["huge_pages"],
        "children_after_sweep": json.loads(children[9:]),
        "loaded_after_sweep": json.loads(loaded[7:]),
    }


def test_importing_the_sweep_imports_no_maths_plotting_tables_or_tracking() -> None:
    code = "import json, sys, logitlab.sweep; print(json.dumps([m for m in sys.argv[1:] if m in sys.modules]))"
    # nor numpy, whose huge-page switch the sweep sets before numpy reads it (`sweep._small_pages_for_numpy`)
    done = subprocess.run([sys.executable, "-c", code, *HEAVY, "numpy"], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []


def test_a_tracked_sweep_starts_its_jobs_with_none_of_them_and_ends_its_helper(project: Path) -> None:
    """On a local store the helper does the tracking (`sweeps.relay`): the sweep process never imports MLflow."""
    seen = probed_sweep(project)
    first, second = seen["loaded_at_job_start"]
    assert first == [], seen
    assert "sklearn" in second and {"matplotlib", "mlflow"}.isdisjoint(second), "tracking and figures are the helper's"
    # what the first job left (its imports, the kept frames) frozen out of the collector's full walks
    assert seen["frozen_at_job_start"][0] == 0 < seen["frozen_at_job_start"][1], seen
    assert seen["children_after_sweep"] == [], "the figure helper outlived the sweep"
    client = MlflowClient(store_uri(project))
    children = client.search_runs(
        [client.get_experiment_by_name("circles").experiment_id], "tags.mlflow.parentRunId != ''"
    )
    assert len(children) == 2 and {run.info.status for run in children} == {"FINISHED"}
    assert all(run.data.tags.get("logitlab.figures") != "pending" for run in children)
    # the best child's figures (from its job's files) and the summary's plot were drawn by the helper
    assert {"matplotlib", "mlflow"}.isdisjoint(seen["loaded_after_sweep"]), seen
    parent = client.get_run(children[0].data.tags["mlflow.parentRunId"])
    logged = {run.info.run_id: {a.path for a in client.list_artifacts(run.info.run_id)} for run in children}
    with_figures = [run_id for run_id, paths in logged.items() if "figures" in paths]
    assert with_figures == [parent.data.tags["best_run_id"]], logged
    figures = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert figures == {Path(a.path).name for a in client.list_artifacts(with_figures[0], "figures")}
    assert len(figures) == 7 and "sweep/sweep_comparison.png" in {
        a.path for a in client.list_artifacts(parent.info.run_id, "sweep")
    }


@pytest.mark.slow
def test_an_untracked_sweep_starts_its_jobs_with_none_of_them(project: Path) -> None:
    seen = probed_sweep(project, "mlflow=off")
    assert seen["loaded_at_job_start"][0] == []
    assert seen["huge_pages_at_last_job_start"] is False  # numpy imported after the sweep turned them off
    assert seen["children_after_sweep"] == []
    assert "matplotlib" not in seen["loaded_after_sweep"], seen
    # the helper drew the best job's figures (mlflow.child_artifacts: best) before it exited; the other job's
    # are drawn on demand from the files its folder names
    (sweep_dir,) = project.glob("multirun/*/*")
    metric = {path.parent.name: json.loads(path.read_text())["metric"] for path in sorted(sweep_dir.glob("*/job.json"))}
    best = max(metric, key=metric.__getitem__)  # the first of equals, as the sweep's summary picks
    drawn = {path.parent.parent.parent.name for path in sweep_dir.glob("*/reports/figures/*.png")}
    assert drawn == {best} and len(list(sweep_dir.glob(f"{best}/reports/figures/*.png"))) == 7
    (other,) = {"0", "1"} - drawn
    done = run([sys.executable, "-m", "logitlab.runs", "figures", str(sweep_dir / other)], project)
    assert "figures added" in done.stderr
    assert len(list(sweep_dir.glob(f"{other}/reports/figures/*.png"))) == 7


@pytest.mark.slow
def test_an_untracked_sweep_draws_every_jobs_figures_with_child_artifacts_all(project: Path) -> None:
    seen = probed_sweep(project, "mlflow=off", "mlflow.child_artifacts=all")
    assert seen["children_after_sweep"] == []
    figures = sorted(path.name for path in project.glob("multirun/*/*/*/reports/figures/*.png"))
    assert len(figures) == 2 * 7, figures  # the helper drew every job's figures before it exited


# A single run whose config is refused: the one-line error comes before the maths is imported.
RUN_THEN_MODULES = (
    "import json, runpy, sys\n"
    "heavy = sys.argv[1].split(',')\n"
    "sys.argv = ['logitlab.sweep', *sys.argv[2:]]\n"
    "try:\n"
    "    runpy.run_module('logitlab.sweep', run_name='__main__')\n"
    "finally:\n"
    "    print('LOADED', json.dumps([m for m in heavy if m in sys.modules]))\n"
)


@pytest.mark.parametrize(
    "override",
    ["model.C=-1", "model.solver=adamw", "features.degree=0", "preprocess.test_size=1.5"],
)
def test_a_refused_config_is_one_line_before_scikit_learn_is_imported(project: Path, override: str) -> None:
    """Every stage's section is validated (`executor.JobConfig.of`) without the stages' maths, so a bad value is
    refused in a fraction of a second rather than after scikit-learn's and scipy's import."""
    command = [sys.executable, "-c", RUN_THEN_MODULES, "sklearn,scipy,matplotlib,mlflow", "mlflow=off", override]
    done = run(command, project, env={"PYTHONPATH": str(project)}, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and override.split("=")[0] in errors[0], done.stderr[-2000:]
    loaded = next(line for line in done.stdout.splitlines() if line.startswith("LOADED "))
    assert json.loads(loaded[7:]) == [], loaded
