"""The committed dvc.lock records the committed code and params, so a fresh clone's `make repro` leaves `git status`
clean; `make lock` brings it up to date; `make clean` removes what the documented commands leave and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import make, make_project, run


def declared_outputs(project: Path) -> set[str]:
    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {next(iter(out)) if isinstance(out, dict) else out for stage in stages.values() for out in stage["outs"]}


def lock_drift(project: Path) -> list[str]:
    """Where dvc.lock disagrees with the project's files, outputs that a fresh copy lacks aside: code or params
    that changed since the lock was written, a changed command, a committed report that is not what the lock
    records, or a stage that reads another's output at a hash that output's entry does not have."""
    outputs = declared_outputs(project)
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    drift = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                drift.append(f"{stage}: {entry}")
                continue
            for kind, changes in entry.items():
                for path, change in changes.items():
                    absent = change in ("deleted", "not in cache")
                    if absent and (kind == "changed outs" or path in outputs):
                        continue  # an output no one has run yet: the copy has none
                    drift.append(f"{stage}: {kind} {path}: {change}")
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    written = {out["path"]: out.get("md5") for entry in lock.values() for out in entry.get("outs", [])}
    for stage, entry in lock.items():
        for dep in entry.get("deps", []):
            if dep["path"] in written and dep.get("md5") != written[dep["path"]]:
                drift.append(f"{stage}: reads {dep['path']} at {dep.get('md5')}, written at {written[dep['path']]}")
    return drift


def test_the_committed_lock_records_the_committed_code_and_params(tmp_path: Path) -> None:
    drift = lock_drift(make_project(tmp_path / "project"))
    assert drift == [], "dvc.lock is older than the code or params it records; run `make lock` and commit:\n" + (
        "\n".join(drift)
    )


def test_the_drift_check_sees_code_params_and_reports(tmp_path: Path) -> None:
    """What the check above must catch, each in a copy whose lock was right."""
    project = make_project(tmp_path / "project")
    with (project / "src/logitlab/plots.py").open("a", encoding="utf-8") as source:
        source.write("# an edit\n")
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["model"]["C"] = 0.5
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (project / "reports/metrics.json").write_text("{}\n", encoding="utf-8")
    drift = "\n".join(lock_drift(project))
    assert "evaluate: changed deps src/logitlab/plots.py: modified" in drift
    assert "train: changed deps params.yaml: {'model': 'modified'}" in drift
    assert "evaluate: changed outs reports/metrics.json: modified" in drift


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_lock_makes_a_fresh_clones_repro_leave_git_clean(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    with (project / "src/logitlab/plots.py").open("a", encoding="utf-8") as source:
        source.write("# an edit that changes no output\n")
    run(["git", "commit", "-qam", "edit"], project)
    assert lock_drift(project)
    mine = project / "data/raw/external/mine.csv"  # a user's CSV, ignored by git: a fresh clone has none
    mine.write_text("x,y\n1,0\n", encoding="utf-8")

    printed = make(project, "lock", timeout=900)
    assert "make lock: updated dvc.lock" in printed
    mine.unlink()
    assert lock_drift(project) == [], "the lock must be a fresh clone's, without the workspace's CSV"
    assert run(["git", "status", "--porcelain"], project).stdout.splitlines() == [" M dvc.lock"]
    run(["git", "commit", "-qam", "make lock"], project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    make(clone, "repro", timeout=900)
    assert run(["git", "status", "--porcelain"], clone).stdout == ""


def test_make_clean_removes_the_documented_commands_leftovers_and_nothing_committed(tmp_path: Path) -> None:
    """Each path stands for what a documented command leaves (make repro, make plots, a sweep, an Optuna study
    with sqlite:///optuna.db, the figures' cache); the tracking store stays."""
    project = make_project(tmp_path / "project")
    leftovers = [
        *declared_outputs(project),
        "dvc_plots/index.html",
        "optuna.db",
        "multirun/2026-01-01/00-00-00/0/job.json",
        "outputs/2026-01-01/00-00-00/.hydra/config.yaml",
        ".cache/logitlab/ingest/key/dataset.parquet",
    ]
    kept = ["mlflow.db", "mlartifacts/synthetic/run/artifact.txt"]
    for name in leftovers + kept:
        path = project / name / ("leftover" if not Path(name).suffix else "")  # no suffix: a folder
        if not (project / name).exists():  # a committed report stays as it is
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("made by a command\n", encoding="utf-8")
    assert run(["git", "status", "--porcelain"], project).stdout == "", "each is ignored by git"
    make(project, "clean")
    ignored = run(["git", "status", "--porcelain", "--ignored"], project).stdout.splitlines()
    assert sorted(ignored) == ["!! mlartifacts/", "!! mlflow.db"]
