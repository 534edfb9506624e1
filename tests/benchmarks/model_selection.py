"""The "Model selection" section of `make bench` (issue 22): sweeps and cross-validation against what a user
would write instead, process start to exit (what a user waits for), both sides interleaved round by round.

1. The README's 9-job sweep, tracked in a fresh SQLite store, against `anchor_mlflow_loop.py` (the same nine
   fits as a hand-written MLflow loop in one process); what each extra tracked job costs beyond its own fit:
   `(T9 - T1 - (the nine fits - the first fit)) / 8`, a 1-job sweep of the same kind against the 9-job one,
   the fits timed in the anchor's process.
2. A cross-validated sweep over ten Cs (`numpy.logspace(-4, 4, 10)`, `preprocess.cv_folds=5`, ranked by
   `cv_accuracy_mean`) on a real CSV with text columns and missing values (`flights.py`: 30k NYC flights),
   raw CSV to refit model, untracked and tracked, against `anchor_logreg_cv.py` (`LogisticRegressionCV(Cs=10,
   cv=5)` in a ColumnTransformer pipeline) on the same rows and split; both models' test accuracy.
3. Start-up: process start to the first job's launch line (Hydra's `#0 : ...`), untracked and tracked; the
   tracked one against `python -c` importing mlflow, opening a fresh SQLite store and starting one run; and
   the time from the summary line (`sweep finished: ...`) to the process's exit.
4. The README sweep on the joblib and the SLURM launcher (SLURM when a cluster answers: `make slurm`): the
   cost of each extra tracked job there, `(T9 - T1) / 8`. No goal.

Every product run starts cold, as the anchors do: a fresh SQLite store and an empty upstream cache, in a
temporary copy of the project (`tests.conftest.make_project`), nothing outside 127.0.0.1. Medians over the
rounds (`--rounds`, default 3), each round A, B, A, B...; fewer rounds when a round would end past the
section's time budget (`--budget-s`, default 300: slow code gets one round rather than a half-hour section).
Lines are timestamped as they arrive on the pipe (PYTHONUNBUFFERED=1 on every side, as on a terminal).

Run alone as ``python -m tests.benchmarks.model_selection [--rounds 3] [--cv-model model=gd]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.benchmarks import flights
from tests.conftest import BASE_ENV, REPO, make_project

HERE = Path(__file__).resolve().parent
README_SWEEP = ["data=circles", "model.learning_rate=0.01,0.1,1", "features.degree=1,2,3"]
ONE_JOB = ["data=circles", "model.learning_rate=0.01", "features.degree=1"]  # the README sweep's first job
CS = np.logspace(-4, 4, 10)
FOLDS = 5
FIRST_JOB = re.compile(r"#0 : ")  # Hydra's launchers log `#<n> : <overrides>` as they launch a job
SUMMARY = re.compile(r"sweep finished: ")
MLFLOW_STARTUP = (
    "import sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); mlflow.set_experiment('startup'); "
    "mlflow.start_run(); mlflow.end_run()"
)
RUN_TIMEOUT_S = 1800
DEFAULT_CV_MODEL = os.environ.get("LOGITLAB_BENCH_CV_MODEL", "model=auto")  # the README's choice for CV sweeps over C


@dataclass
class Run:
    """One process: start to exit in seconds, and each output line with the seconds since start it arrived at."""

    seconds: float
    lines: list[tuple[float, str]]

    def at(self, pattern: re.Pattern[str]) -> float | None:
        return next((when for when, line in self.lines if pattern.search(line)), None)


def timed(command: Sequence[str], cwd: Path, env: dict[str, str]) -> Run:
    """Run `command` to its exit; its stdout and stderr read as one stream, each line timed on arrival."""
    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    process = subprocess.Popen(
        list(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert process.stdout is not None
    stream = process.stdout

    def read() -> None:
        for line in stream:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    seconds = time.perf_counter() - start
    reader.join(timeout=30)  # a helper process still holding the pipe does not hold the measurement
    if code != 0:
        tail = "\n".join(line for _, line in lines[-40:])
        raise RuntimeError(f"{' '.join(command[:4])} ... exited {code}:\n{tail}")
    return Run(seconds, lines)


@dataclass
class Project:
    """A temporary copy of the project; every run in it starts cold (fresh store, empty upstream cache)."""

    root: Path
    runs: int = 0

    def env(self, tracking_uri: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**BASE_ENV, "PYTHONUNBUFFERED": "1", **(extra or {})}
        if tracking_uri:
            env["MLFLOW_TRACKING_URI"] = tracking_uri
        return env

    def fresh_store(self) -> str:
        self.runs += 1
        path = self.root / "stores" / str(self.runs) / "mlflow.db"
        path.parent.mkdir(parents=True)
        return f"sqlite:///{path}"

    def sweep(self, overrides: Sequence[str], tracked: bool, env: dict[str, str] | None = None) -> tuple[Run, Path]:
        shutil.rmtree(self.root / ".cache" / "logitlab", ignore_errors=True)
        self.runs += 1
        sweep_dir = self.root / "multirun" / f"sweep-{self.runs}"
        args = [*overrides, f"hydra.sweep.dir={sweep_dir}", *([] if tracked else ["mlflow=off"])]
        command = [sys.executable, "-m", "logitlab.sweep", "-m", *args]
        return timed(command, self.root, self.env(self.fresh_store() if tracked else None, env)), sweep_dir

    def script(self, name: str, *args: str, tracked: bool = False) -> Run:
        command = [sys.executable, str(HERE / name), *args]
        return timed(command, self.root, self.env(self.fresh_store() if tracked else None))

    def mlflow_startup(self) -> Run:
        return timed([sys.executable, "-c", MLFLOW_STARTUP, self.fresh_store()], self.root, self.env())


def job_metrics(sweep_dir: Path) -> list[dict[str, Any]]:
    """Each job's metrics.json (evaluate's, in the job's folder), in job order."""
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [json.loads((job / "reports" / "metrics.json").read_text()) for job in jobs]


def model_choice(sweep_dir: Path) -> str:
    """The solver the sweep's jobs were configured with (Hydra's multirun.yaml), for the report."""
    model = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())["model"]
    return f"solver={model['solver']}" + (f" update={model['update']}" if model["solver"] == "gd" else "")


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Rounds:
    """Round after round of `measure` while a round still fits before `deadline` (always at least one)."""

    limit: int
    deadline: float
    samples: dict[str, list[Any]] = field(default_factory=dict)
    done: int = 0

    def run(self, measure: Callable[[], dict[str, Any]]) -> None:
        started = time.monotonic()
        while self.done < self.limit:
            for key, value in measure().items():
                self.samples.setdefault(key, []).append(value)
            self.done += 1
            per_round = (time.monotonic() - started) / self.done
            if time.monotonic() + per_round > self.deadline:
                break

    def median(self, key: str) -> float | None:
        return median(self.samples.get(key, []))


def row(
    measure: str, ours: float | None, anchor: str = "", anchor_s: float | None = None, **rest: Any
) -> dict[str, Any]:
    """One line of the section: `goal` is a ratio goal ("<= 1.5x") when there is an anchor, else seconds."""
    ratio = ours / anchor_s if ours is not None and anchor_s else None
    goal = rest.pop("goal", "")
    met = rest.pop("met", None)
    if met is None and goal:
        bound = float(re.sub(r"[^0-9.]", "", goal))
        value = ratio if goal.endswith("x") else ours
        met = None if value is None else value <= bound
    return {
        "measure": measure,
        "ours_s": ours,
        "anchor": anchor,
        "anchor_s": anchor_s,
        "ratio": ratio,
        "goal": goal or "-",
        "met": "-" if met is None else ("yes" if met else "no"),
        **rest,
    }


def readme_sweep(project: Project, rounds: Rounds) -> list[dict[str, Any]]:
    """Goals 1 and 3: the README sweep tracked and untracked, its anchor, a 1-job sweep, MLflow's start-up."""

    def one_round() -> dict[str, Any]:
        tracked, tracked_dir = project.sweep(README_SWEEP, tracked=True)
        out = project.root / f"anchor-{project.runs}.json"
        anchor = project.script("anchor_mlflow_loop.py", str(project.root / "conf"), str(out), tracked=True)
        one, _ = project.sweep(ONE_JOB, tracked=True)
        untracked, _ = project.sweep(README_SWEEP, tracked=False)
        startup = project.mlflow_startup()
        loop = json.loads(out.read_text())
        ours = [job["val_accuracy"] for job in job_metrics(tracked_dir)]
        return {
            "sweep": tracked.seconds,
            "anchor": anchor.seconds,
            "one_job": one.seconds,
            "fits": sum(loop["fit_seconds"]),
            "first_fit": loop["fit_seconds"][0],
            "same_results": np.allclose(ours, loop["val_accuracies"], rtol=0, atol=1e-9),
            "tracked_startup": tracked.at(FIRST_JOB),
            "untracked_startup": untracked.at(FIRST_JOB),
            "mlflow_startup": startup.seconds,
            "tracked_exit": _after(tracked, SUMMARY),
            "untracked_exit": _after(untracked, SUMMARY),
        }

    rounds.run(one_round)
    m = rounds.median
    same = "same 9 val accuracies" if all(rounds.samples["same_results"]) else "DIFFERENT val accuracies"
    extra = None
    if None not in (m("sweep"), m("one_job"), m("fits"), m("first_fit")):
        extra = (m("sweep") - m("one_job") - (m("fits") - m("first_fit"))) / 8  # type: ignore[operator]
    n = rounds.done
    return [
        row("1. README 9-job sweep, tracked", m("sweep"), "hand-written MLflow loop", m("anchor"), goal="<= 1.5x",
            rounds=n, note=f"{same}; the nine fits {m('fits'):.2f} s in process"),
        row("1. each extra tracked job, beyond its fit", extra, goal="<= 0.15 s", rounds=n,
            note=f"1-job sweep {m('one_job'):.2f} s"),
        row("3. start-up to the first job, untracked", m("untracked_startup"), goal="<= 1.5 s", rounds=n),
        row("3. start-up to the first job, tracked", m("tracked_startup"), "mlflow import + SQLite store + 1 run",
            m("mlflow_startup"), goal="<= 1.2x", rounds=n),
        row("3. summary line to exit, tracked", m("tracked_exit"), goal="<= 0.3 s", rounds=n),
        row("3. summary line to exit, untracked", m("untracked_exit"), goal="<= 0.3 s", rounds=n),
    ]  # fmt: skip


def _after(run: Run, pattern: re.Pattern[str]) -> float | None:
    at = run.at(pattern)
    return None if at is None else run.seconds - at


@dataclass(frozen=True)
class CvData:
    """The CSV of the cross-validated sweep: the flights by default; LOGITLAB_BENCH_CV_CSV (with _TARGET,
    _POSITIVE and _MISSING) re-checks the goals on another file with text columns and missing values."""

    csv: Path | None = Path(os.environ["LOGITLAB_BENCH_CV_CSV"]) if os.environ.get("LOGITLAB_BENCH_CV_CSV") else None
    target: str = os.environ.get("LOGITLAB_BENCH_CV_TARGET", flights.TARGET)
    positive: str = os.environ.get("LOGITLAB_BENCH_CV_POSITIVE", flights.POSITIVE)
    missing: str = os.environ.get("LOGITLAB_BENCH_CV_MISSING", flights.MISSING)

    def path(self, project: Path) -> Path:
        return self.csv or flights.build(project / "data" / "raw" / "external" / "flights.csv")


def cross_validation(project: Project, rounds: Rounds, cv_model: str, data: CvData) -> list[dict[str, Any]]:
    """Goal 2: the cross-validated C sweep untracked and tracked, against LogisticRegressionCV."""
    csv = data.path(project.root)
    cfg = yaml.safe_load((project.root / "conf" / "config.yaml").read_text())
    test_size = yaml.safe_load((project.root / "conf" / "preprocess" / "standard.yaml").read_text())["test_size"]
    overrides = [
        "data=csv",
        f"data.path={csv}",
        f"data.target={data.target}",
        f"data.positive_label={data.positive}",
        f"data.na_values=[{data.missing}]",
        "preprocess.max_categories=1000",  # the flights' `dest` has 100 airports; one-hot takes any count
        f"preprocess.cv_folds={FOLDS}",
        "sweep.metric=cv_accuracy_mean",
        "model.C=" + ",".join(repr(float(c)) for c in CS),
        *cv_model.split(),
    ]
    facts: dict[str, Any] = {}

    def one_round() -> dict[str, Any]:
        untracked, sweep_dir = project.sweep(overrides, tracked=False)
        out = project.root / f"logreg-cv-{project.runs}.json"
        args = (str(csv), data.target, data.positive, data.missing, str(test_size), str(cfg["seed"]), str(out))
        anchor = project.script("anchor_logreg_cv.py", *args)
        theirs = json.loads(out.read_text())
        tracked, _ = project.sweep(overrides, tracked=True)
        facts["split"] = _same_split(project.root, theirs["test_labels"])
        facts["model"] = model_choice(sweep_dir)
        jobs = job_metrics(sweep_dir)
        best = max(jobs, key=lambda job: job["cv_accuracy_mean"])  # the first of equals, as the sweep picks
        return {
            "untracked": untracked.seconds,
            "tracked": tracked.seconds,
            "anchor": anchor.seconds,
            "ours_accuracy": best["test_accuracy"],
            "their_accuracy": theirs["test_accuracy"],
            "their_C": theirs["C"],
        }

    rounds.run(one_round)
    m, n = rounds.median, rounds.done
    split = {True: "the same test rows", False: "DIFFERENT test rows", None: "test rows not compared"}[facts["split"]]
    what = f"{csv.name}, {len(CS)} Cs x {FOLDS} folds, {facts['model']}"
    what += f" ({cv_model or 'the default config'})"
    ours, theirs = m("ours_accuracy"), m("their_accuracy")
    difference = None if ours is None or theirs is None else round((ours - theirs) * 100, 9)  # 0.5 is 0.5
    return [
        row("2. CV sweep, untracked", m("untracked"), "LogisticRegressionCV pipeline", m("anchor"), goal="<= 2x",
            rounds=n, note=what),
        row("2. CV sweep, tracked", m("tracked"), "LogisticRegressionCV pipeline", m("anchor"), goal="<= 3x",
            rounds=n, note=what),
        row("2. test accuracy, ours - LogisticRegressionCV's (points)", difference, goal=">= -0.5 points",
            met=None if difference is None else difference >= -0.5, rounds=n,
            note=f"ours {ours:.4f}, theirs {theirs:.4f} (C={m('their_C'):.3g}); {split}"),
    ]  # fmt: skip


def _same_split(root: Path, their_labels: list[int]) -> bool | None:
    """Whether the anchor's test rows are the sweep's: the label sequence of the test split preprocess cached
    (the only data set in the cache, emptied before the sweep), against the anchor's. None when not found."""
    import pandas as pd

    cached = sorted((root / ".cache" / "logitlab").glob("preprocess/*/data/interim/test.parquet"))
    if len(cached) != 1:
        return None
    return bool(pd.read_parquet(cached[0], columns=["target"])["target"].tolist() == their_labels)


def slurm_env() -> dict[str, str] | None:
    """SLURM_CONF of a cluster that answers (the user's, or the project's from `make slurm`), else None."""
    candidates = [os.environ.get("SLURM_CONF"), str(REPO / ".slurm" / "slurm.conf")]
    for conf in (c for c in candidates if c and Path(c).is_file()):
        env = {**os.environ, "SLURM_CONF": conf}
        try:
            answered = subprocess.run(["sinfo", "-h"], env=env, capture_output=True, timeout=15, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if answered.returncode == 0 and answered.stdout.strip():
            return {"SLURM_CONF": conf}
    return None


def launchers(project: Project) -> list[dict[str, Any]]:
    """Goal 4 (no goal set): what each extra tracked job costs on the joblib and SLURM launchers."""
    rows = []
    slurm = slurm_env()
    for name, env in (("joblib", {}), ("slurm", slurm)):
        if env is None:
            rows.append(row(f"4. each extra tracked job, {name}", None, note="skipped: no SLURM cluster (make slurm)"))
            continue
        launcher = [f"hydra/launcher={name}"]
        try:
            nine, _ = project.sweep([*README_SWEEP, *launcher], tracked=True, env=env)
            one, _ = project.sweep([*ONE_JOB, *launcher], tracked=True, env=env)
        except RuntimeError as err:  # a cluster that stopped taking jobs costs its row, not the section
            rows.append(row(f"4. each extra tracked job, {name}", None, note=f"failed: {str(err)[-300:]}"))
            continue
        per_job = (nine.seconds - one.seconds) / 8
        note = f"9 jobs {nine.seconds:.2f} s, 1 job {one.seconds:.2f} s (fits included)"
        rows.append(row(f"4. each extra tracked job, {name}", per_job, rounds=1, note=note))
    return rows


def measure(rounds: int = 3, budget_s: float = 300, cv_model: str = DEFAULT_CV_MODEL) -> list[dict[str, Any]]:
    """Every row of the section; the load average (1 min) when each part ended is in its rows."""
    start = time.monotonic()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="logitlab-selection-bench-") as tmp:
        project = Project(make_project(Path(tmp) / "project"))
        parts: list[tuple[float, Callable[[Rounds], list[dict[str, Any]]]]] = [
            (0.4, lambda r: readme_sweep(project, r)),
            (0.85, lambda r: cross_validation(project, r, cv_model, CvData())),
        ]
        for share, part in parts:
            part_rows = part(Rounds(rounds, start + share * budget_s))
            rows += [{**r, "load": os.getloadavg()[0]} for r in part_rows]
        rows += [{**r, "load": os.getloadavg()[0]} for r in launchers(project)]
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ["measure", "ours_s", "anchor", "anchor_s", "ratio", "goal", "met", "rounds", "load", "note"]
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="N (1-10)")
    parser.add_argument("--budget-s", type=float, default=300)
    parser.add_argument("--cv-model", default=DEFAULT_CV_MODEL, help="overrides for the CV sweep's model")
    args = parser.parse_args()
    from tests.benchmarks.conftest import machine

    print("machine: " + ", ".join(f"{key} {value}" for key, value in machine().items()))
    print(format_table(measure(args.rounds, args.budget_s, args.cv_model)))


if __name__ == "__main__":
    main()
