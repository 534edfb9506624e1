"""Fault injection with real processes: SIGKILL during `dvc repro`, SIGINT/SIGTERM during sweeps and single runs.

What a killed or interrupted command must leave behind: no half-written file at an output path, no stray
temporary file that git or DVC would pick up, no MLflow run stuck RUNNING after SIGINT/SIGTERM, and a next
run that just works.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from .conftest import BASE_ENV, logitlab, run, store_uri

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"
OUTPUT_DIRS = ("data/raw", "data/interim", "data/processed", "models", "reports")
TMP_NAME = re.compile(r"^\..+\.(tmp|old)$")


# ------------------------------------------------------------------------------------------- helpers
def set_params(project: Path, **updates: object) -> None:
    """Edit params.yaml (`data__n_samples=...` -> data.n_samples) and commit it, as a user changing the config."""
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    for dotted, value in updates.items():
        section, key = dotted.split("__")
        params[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    run(["git", "commit", "-q", "-am", "params"], project)


def output_files(project: Path) -> list[Path]:
    files = []
    for name in OUTPUT_DIRS:
        folder = project / name
        if folder.is_dir():
            files += [p for p in folder.rglob("*") if p.is_file() and "external" not in p.parts]
    return sorted(files)


def temp_root(project: Path, path: Path) -> Path | None:
    """The killed writer's temp file or directory (`io.atomic_path`, `io.atomic_dir`) that `path` is or is in."""
    parts = path.relative_to(project).parts
    hit = next((i for i, part in enumerate(parts) if TMP_NAME.match(part)), None)
    return None if hit is None else Path(*parts[: hit + 1])


def stray_temps(project: Path) -> list[str]:
    return sorted({str(root) for p in output_files(project) if (root := temp_root(project, p)) is not None})


def check_intact(project: Path) -> None:
    """Every output file that exists is complete: it parses with the reader its format needs."""
    from logitlab.model import LogisticRegression
    from logitlab.scoring import ScoringPipeline

    for path in output_files(project):
        if temp_root(project, path) is not None:
            continue  # a killed writer's temp file or directory: never at an output path (checked after recovery)
        where = path.relative_to(project)
        if path.suffix == ".parquet":
            assert len(pd.read_parquet(path)) > 0, where
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0, where
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                assert set(arrays.files) == {"coef", "intercept"}, where
        elif path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG_SIGNATURE) and data.rstrip(b"\0").endswith(PNG_END), where
    models = project / "models"
    if (models / "model.json").is_file():
        LogisticRegression.load(models / "model")  # checks the npz against the sha256 in model.json
    if (models / "model.json").is_file() and (models / "transforms.json").is_file():
        ScoringPipeline.load(models)


def digests(project: Path) -> dict[str, str]:
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest() for p in output_files(project)}


def lock_outs(project: Path) -> dict[str, dict[str, str]]:
    lock = yaml.safe_load((project / "dvc.lock").read_text(encoding="utf-8"))
    return {name: {o["path"]: o["md5"] for o in stage.get("outs", [])} for name, stage in lock["stages"].items()}


def dvc_accepts_lock(text: str) -> bool:
    """Would DVC load this dvc.lock? (its own YAML parser and lockfile schema)."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA
    from ruamel.yaml import YAML, YAMLError
    from voluptuous import Invalid

    try:
        COMPILED_LOCKFILE_SCHEMA(YAML(typ="safe").load(text) or {})
    except (YAMLError, Invalid):
        return False
    return True


def recover_cut_lock(project: Path, reference_lock: str) -> bool:
    """DVC writes dvc.lock in place (open with truncation, then dump: `dvc.utils.serialize._dump_data`), so a kill
    inside that write leaves it empty or cut short. Most cuts still parse (DVC then reruns the stages whose hashes
    differ); an empty or unparsable one makes DVC refuse the next repro ("validation failed"). Check the damage is
    exactly a cut (a prefix of the complete lock, never anything of ours) and recover as docs/reliability.md tells a
    user: delete it, so the next repro runs every stage. True if DVC would have refused it."""
    lock = project / "dvc.lock"
    text = lock.read_text(encoding="utf-8") if lock.exists() else ""
    if not lock.exists() or dvc_accepts_lock(text):
        return False
    assert reference_lock.startswith(text), f"dvc.lock damaged other than by a cut write:\n{text[-500:]}"
    lock.unlink()
    return True


def dvc_repro(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`dvc repro`, doing what DVC tells a user when a killed DVC left its rwlock behind (DVC itself drops the
    entries of dead PIDs and only asks for `rm .dvc/tmp/rwlock` if the file is corrupt)."""
    done = run(["dvc", "repro", *args], project, check=False)
    if done.returncode != 0 and "rwlock" in (done.stdout + done.stderr).lower():
        print(f"dvc repro refused after a kill, removing .dvc/tmp/rwlock as it says: {done.stderr[-500:]}")
        (project / ".dvc" / "tmp" / "rwlock").unlink(missing_ok=True)
        done = run(["dvc", "repro", *args], project, check=False)
    assert done.returncode == 0, (
        f"dvc repro {' '.join(args)} failed after a kill:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def python_c(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -c code args` in the test environment, as a separate process a test can have killed."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=BASE_ENV, capture_output=True, text=True, timeout=60, check=False
    )


# ------------------------------------------------------------------------------------- atomic writes
def test_sigkill_inside_atomic_write_keeps_old_content_and_next_write_removes_the_temp(tmp_path: Path) -> None:
    """A writer killed between writing the temp file and the rename leaves the old content in place; the next
    write of the same file cleans the orphaned temp file up; outputs get the usual umask permissions."""
    target = tmp_path / "out" / "metrics.json"
    killed = python_c(
        "import os, signal, sys\n"
        "from logitlab import io\n"
        "io.write_json(sys.argv[1], {'old': 1})\n"
        "with io.atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_text('{\"new\": ')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n",
        str(target),
    )
    assert killed.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"old": 1}
    orphans = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert len(orphans) == 1 and TMP_NAME.match(orphans[0]), orphans

    done = python_c(
        "import sys\nfrom logitlab import io\nio.write_json(sys.argv[1], {'new': 2})",
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text()) == {"new": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name], "the orphaned temp file is still there"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("moment", ["writing", "between the renames"])
def test_sigkill_inside_a_folder_replacement_is_cleaned_up_by_the_next_one(tmp_path: Path, moment: str) -> None:
    """`io.replaced_folder` killed while its new folder is written, or after the old folder was moved aside:
    what it left (a .tmp or a .old folder) is removed by the next replacement of that folder."""
    target = tmp_path / "reports" / "plots"
    killed = python_c(
        "import os, signal, sys\n"
        "from logitlab import io\n"
        "with io.replaced_folder(sys.argv[1]) as tmp:\n"
        "    (tmp / 'old.csv').write_text('old')\n"
        "rename = os.rename\n"
        "def rename_then_die(src, dst):\n"
        "    rename(src, dst)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "with io.replaced_folder(sys.argv[1]) as tmp:\n"
        "    (tmp / 'new.csv').write_text('new')\n"
        "    if sys.argv[2] == 'writing':\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    os.rename = rename_then_die\n",
        str(target),
        moment,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = sorted(p.name for p in target.parent.iterdir() if p.name != target.name)
    assert len(left) == (1 if moment == "writing" else 2) and all(TMP_NAME.match(name) for name in left), left

    done = python_c(
        "import sys\nfrom logitlab import io\n"
        "with io.replaced_folder(sys.argv[1]) as tmp:\n"
        "    (tmp / 'next.csv').write_text('next')\n",
        str(target),
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in target.parent.iterdir()) == ["plots"]
    assert sorted(p.name for p in target.iterdir()) == ["next.csv"]


@pytest.mark.slow
def test_sigkill_during_dvc_repro_never_leaves_partial_outputs_and_repro_recovers(project: Path) -> None:
    """`dvc repro -f` killed (SIGKILL, whole process group) at seeded random moments, 6 times: each time every
    output file that exists is complete, and a final `dvc repro` gives outputs identical to an uninterrupted run
    with no temp file left in the workspace, in git's view or in a DVC-tracked directory."""
    set_params(project, data__n_samples=100000, model__max_iter=5, mlflow__enabled=False)
    started = time.monotonic()
    dvc_repro(project)
    uninterrupted = time.monotonic() - started
    reference, reference_lock = digests(project), lock_outs(project)
    reference_lock_text = (project / "dvc.lock").read_text(encoding="utf-8")
    assert any(p.startswith("models/") for p in reference)

    rng = random.Random(20261128)
    hit_stages, cut_locks = [], []
    for attempt in range(6):  # stratified: each kill lands in its own sixth of the run, from ingest to evaluate
        log = project.parent / f"repro-{attempt}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                ["dvc", "repro", "-f"],
                cwd=project,
                env=BASE_ENV,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            time.sleep(uninterrupted * rng.uniform(0.05 + 0.15 * attempt, 0.2 + 0.15 * attempt))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        stages = re.findall(r"Running stage '([\w-]+)'", log.read_text())
        hit_stages.append(stages[-1] if stages else "(startup)")
        check_intact(project)
        if recover_cut_lock(project, reference_lock_text):
            cut_locks.append(attempt)
    print(f"uninterrupted repro {uninterrupted:.1f}s; kills landed in: {hit_stages}; dvc.lock cut by: {cut_locks}")
    if not cut_locks:  # a kill rarely lands inside DVC's few-ms write: leave what it leaves, so the recovery runs
        (project / "dvc.lock").write_text("", encoding="utf-8")  # truncated, the dump not yet flushed
        refused = run(["dvc", "status"], project, check=False)
        assert refused.returncode != 0 and "dvc.lock" in refused.stderr, refused.stderr
        assert recover_cut_lock(project, reference_lock_text)

    dvc_repro(project)
    check_intact(project)
    # A killed writer's temp file stays where DVC then had nothing to redo (the next write of that file
    # removes it); it must never be tracked: both git and DVC ignore it.
    for temp in stray_temps(project):
        assert run(["git", "check-ignore", "-q", temp], project, check=False).returncode == 0, temp
        assert run(["dvc", "check-ignore", "-q", temp], project, check=False).returncode == 0, temp
    finished = {path: digest for path, digest in digests(project).items() if temp_root(project, project / path) is None}
    assert finished == reference
    assert lock_outs(project) == reference_lock
    status = run(["dvc", "status"], project)
    assert "up to date" in status.stdout, status.stdout
    untracked = run(["git", "status", "--porcelain", "--untracked-files=all"], project).stdout.splitlines()
    assert [line for line in untracked if line.startswith("??")] == [], untracked


# --------------------------------------------------------------------------------- SIGINT / SIGTERM
# tol=0: the accelerated default would converge in a few hundred epochs and the signal would land after training.
SLOW_JOB = ["model.max_iter=20000", "model.tol=0", "data.n_samples=20000"]
RUNS_SQL = """
    SELECT r.run_uuid, r.status, p.value FROM runs r
    LEFT JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId'
"""


def runs_in_store(project: Path) -> list[tuple[str, str, str | None]]:
    """(run id, status, parent id) read straight from the SQLite file, read-only (never creates the store)."""
    db = project / "mlflow.db"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return list(conn.execute(RUNS_SQL))
    except sqlite3.OperationalError:  # tables not created yet
        return []


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def interrupt(proc: subprocess.Popen[bytes], how: str) -> float:
    """SIGINT to the process group (Ctrl-C in a terminal), SIGTERM to the main process (`kill`, a scheduler)."""
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        proc.wait(timeout=60)
        took = time.monotonic() - sent
        # No worker may outlive the sweep (loky workers busy training would hold CPU and the store).
        wait_for(lambda: not group_members(proc.pid), 15, "the sweep's worker processes to exit")
    finally:
        if proc.poll() is None or group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return took


def group_members(pgid: int) -> list[int]:
    import psutil

    alive = []
    for p in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
    return alive


def start(project: Path, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "logitlab.sweep", *args],
            cwd=project,
            env=BASE_ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def signal_project(module_project: Path) -> Path:
    # Fill the memo cache for the slow jobs' data once, so each test reaches training quickly.
    logitlab(["sweep", *SLOW_JOB, "model.max_iter=1", "mlflow.enabled=false"], module_project)
    return module_project


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "how"),
    [("local", "SIGINT"), ("local", "SIGTERM"), ("joblib", "SIGINT"), ("joblib", "SIGTERM")],
)
def test_interrupted_sweep_ends_runs_killed_exits_promptly_and_reruns(
    signal_project: Path, launcher: str, how: str
) -> None:
    project = signal_project
    sweep_dir = project / "multirun" / f"interrupt-{launcher}-{how}"
    parallel = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    running_wanted = 2 if launcher == "joblib" else 1
    log = project.parent / f"{launcher}-{how}.log"
    proc = start(
        project, ["-m", *parallel, f"hydra.sweep.dir={sweep_dir}", "model.learning_rate=0.1,0.2", *SLOW_JOB], log
    )

    parent_file = sweep_dir / "mlflow_parent.json"
    wait_for(lambda: parent_file.is_file() or proc.poll() is not None, 120, "the sweep's parent run")
    assert proc.poll() is None, log.read_text()
    parent = json.loads(parent_file.read_text())["run_id"]

    def children() -> list[tuple[str, str, str | None]]:
        return [r for r in runs_in_store(project) if r[2] == parent]

    wait_for(
        lambda: sum(r[1] == "RUNNING" for r in children()) >= running_wanted or proc.poll() is not None,
        120,
        "running jobs",
    )
    assert proc.poll() is None, log.read_text()
    time.sleep(1.0)
    interrupt_and_check_exit(proc, how, log, f"{launcher} sweep")
    statuses = {run_id: status for run_id, status, _ in runs_in_store(project)}
    assert statuses[parent] == "KILLED"
    kids = [status for _, status, _ in children()]
    # The jobs running when the signal came end KILLED; a job that finished before it (on a local store the
    # helper may make a job's run after the job's start, `sweeps.relay`) stays FINISHED, as its job.json says.
    finished = [json.loads(path.read_text())["status"] for path in sweep_dir.glob("*/job.json")].count("FINISHED")
    assert kids.count("KILLED") >= running_wanted and kids.count("FINISHED") == finished, kids
    assert set(kids) <= {"KILLED", "FINISHED"}, kids

    # A rerun into the same store: a new parent, every run FINISHED.
    rerun_dir = project / "multirun" / f"rerun-{launcher}-{how}"
    logitlab(
        [
            "sweep",
            "-m",
            *parallel,
            f"hydra.sweep.dir={rerun_dir}",
            "model.learning_rate=0.1,0.2",
            "model.max_iter=100",
            "mlflow.log_model=false",
        ],
        project,
    )
    new_parent = json.loads((rerun_dir / "mlflow_parent.json").read_text())["run_id"]
    assert new_parent != parent
    rows = runs_in_store(project)
    assert {status for run_id, status, _ in rows if run_id == new_parent} == {"FINISHED"}
    assert sorted(status for _, status, p in rows if p == new_parent) == ["FINISHED", "FINISHED"]
    assert "RUNNING" not in {status for _, status, _ in rows}


@pytest.mark.slow
def test_a_sweep_whose_tracking_helper_is_killed_ends_its_runs_failed_in_one_line(signal_project: Path) -> None:
    """On a local store the figure helper tracks the sweep (`sweeps.relay`). Killed mid-sweep, it takes what it
    was handed with it: the jobs after it fail with one line each, the sweep process ends the parent and the
    running child FAILED itself (the parent read from the sweep folder), and the command exits 2 in one line."""
    import psutil

    project = signal_project
    sweep_dir = project / "multirun" / "helper-killed"
    log = project.parent / "helper-killed.log"
    proc = start(project, ["-m", f"hydra.sweep.dir={sweep_dir}", "model.learning_rate=0.1,0.2,0.3", *SLOW_JOB], log)
    parent_file = sweep_dir / "mlflow_parent.json"
    wait_for(lambda: parent_file.is_file() or proc.poll() is not None, 120, "the sweep's parent run")
    parent = json.loads(parent_file.read_text())["run_id"]
    wait_for(
        lambda: any(r[1] == "RUNNING" and r[2] == parent for r in runs_in_store(project)) or proc.poll() is not None,
        120,
        "a running job",
    )
    assert proc.poll() is None, log.read_text()
    (helper,) = [p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    helper.kill()
    proc.wait(timeout=300)
    output = log.read_text()
    assert proc.returncode == 2 and "Traceback" not in output, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "helper process" in errors[0], output[-3000:]
    rows = [(run_id, status) for run_id, status, of in runs_in_store(project) if parent in (run_id, of)]
    assert dict(rows)[parent] == "FAILED" and "RUNNING" not in dict(rows).values(), rows


def interrupt_and_check_exit(proc: subprocess.Popen, how: str, log: Path, what: str) -> None:
    """Send the signal; the process must exit promptly, non-zero, and without a traceback."""
    took = interrupt(proc, how)
    output = log.read_text()
    print(f"{what}: exited {proc.returncode} {took:.1f}s after {how}")
    assert proc.returncode not in (0, None), output[-3000:]
    assert took < 30, f"the {what} took {took:.1f}s to exit after {how}"
    assert "Traceback" not in output, output[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupted_single_run_ends_killed(signal_project: Path, how: str) -> None:
    project = signal_project
    before = {r[0] for r in runs_in_store(project)}
    log = project.parent / f"single-{how}.log"
    proc = start(project, [f"hydra.run.dir={project / 'outputs' / how}", *SLOW_JOB], log)

    def new_running() -> list[str]:
        return [r[0] for r in runs_in_store(project) if r[0] not in before and r[1] == "RUNNING"]

    wait_for(lambda: bool(new_running()) or proc.poll() is not None, 120, "the run to start")
    assert proc.poll() is None, log.read_text()
    (run_id,) = new_running()
    time.sleep(1.0)
    interrupt_and_check_exit(proc, how, log, "single run")
    from mlflow.tracking import MlflowClient

    assert MlflowClient(store_uri(project)).get_run(run_id).info.status == "KILLED"


@pytest.mark.slow
def test_sigterm_to_dvc_repro_during_tracking_ends_the_mlflow_run_killed(project: Path) -> None:
    """A cancelled CI job or `kill -TERM -<pgid>` while the evaluate stage logs to MLflow: the stage's run ends
    KILLED (not RUNNING forever), and redoing the stage records a FINISHED run."""
    run(["dvc", "repro"], project)
    before = {r[0] for r in runs_in_store(project)}
    log = project.parent / "repro-sigterm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["dvc", "repro", "-f", "-s", "evaluate"],
            cwd=project,
            env=BASE_ENV,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def new_running() -> list[str]:
        return [r[0] for r in runs_in_store(project) if r[0] not in before and r[1] == "RUNNING"]

    wait_for(lambda: bool(new_running()) or proc.poll() is not None, 120, "the evaluate stage's MLflow run")
    assert proc.poll() is None, log.read_text()
    (run_id,) = new_running()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wait_for(lambda: not group_members(proc.pid), 15, "the stage process to exit")
    assert proc.returncode != 0
    statuses = {r[0]: r[1] for r in runs_in_store(project)}
    assert statuses[run_id] == "KILLED", log.read_text()[-3000:]

    # The stage's files were complete before the signal, so a plain `dvc repro` finds nothing to do; redoing the
    # interrupted tracking is `dvc repro -f -s evaluate`.
    dvc_repro(project, "-f", "-s", "evaluate")
    check_intact(project)
    rows = [r for r in runs_in_store(project) if r[0] not in before and r[0] != run_id]
    assert [status for _, status, _ in rows] == ["FINISHED"]
