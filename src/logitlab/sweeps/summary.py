"""The sweep's summary for its parent run: one row per job, as CSV/HTML, and metric-vs-param plots; with several
objectives, the Pareto front as a table and a figure."""

from __future__ import annotations

import itertools
import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from logitlab import config, finishing, io
from logitlab.tracking import selection

if TYPE_CHECKING:
    from mlflow.entities import Run

SHOWN_METRICS = (
    "train_accuracy",
    "val_accuracy",
    "cv_accuracy_mean",
    "cv_accuracy_std",
    "test_accuracy",
    "test_roc_auc",
    "test_log_loss",
    "n_iter",
)
PARETO_CSV, PARETO_PNG = "pareto_front.csv", "pareto_front.png"
PANEL_IN = (4.5, 3.5)  # a comparison panel, inches
LONG_TICK_LABEL = 8  # characters: longer categorical values are drawn at 30 degrees, so that they do not overlap


def write(runs: list[Run], sweep: config.SweepConfig, out_dir: Path) -> None:
    """The sweep table (`sweep_table.csv`, `.html`) and the comparison plot, into `out_dir`; the plots in the
    figure helper while a sweep has one (`finishing.call`: `finishing.drain` waits for them)."""
    frame = table(runs, sweep)
    out_dir.mkdir(parents=True, exist_ok=True)
    io.write_csv(out_dir / "sweep_table.csv", frame)
    io.write_text(out_dir / "sweep_table.html", to_html(frame, ", ".join(sweep.metrics)))
    finishing.call(comparison_plot, frame, sweep.metric, out_dir / "sweep_comparison.png", label="the sweep plot")
    if sweep.several:
        front = pareto_table(runs, sweep)
        io.write_csv(out_dir / PARETO_CSV, front)
        finishing.call(pareto_plot, frame, front, sweep, out_dir / PARETO_PNG, label="the Pareto plot")


def swept_params(runs: list[Run]) -> list[str]:
    """The params whose value differs between jobs (what the sweep varied)."""
    keys = sorted({k for r in runs for k in r.data.params})
    return [k for k in keys if len({r.data.params.get(k) for r in runs}) > 1]


def table(runs: list[Run], sweep: config.SweepConfig) -> pd.DataFrame:
    """One row per job, best first (`selection.rank_key`); failed jobs last, with their reason."""
    varied = swept_params(runs)
    shown = list(dict.fromkeys([*sweep.metrics, *SHOWN_METRICS]))
    rows: list[dict[str, object]] = []
    for run in sorted(runs, key=lambda r: selection.rank_key(r, sweep)):
        row: dict[str, object] = {
            "rank": len(rows) + 1,
            "job": int(run.data.tags.get("hydra_job_num", "0")),
            "run_name": run.info.run_name,
            "run_id": run.info.run_id,
            "status": "PRUNED" if selection.pruned(run) else run.info.status,
        }
        row.update({k: run.data.params.get(k) for k in varied})
        row.update({m: run.data.metrics.get(m) for m in shown})
        row["error"] = run.data.tags.get("error", "")
        rows.append(row)
    shown = [m for m in shown if m in sweep.metrics or any(row[m] is not None for row in rows)]  # this sweep's
    columns = ["rank", "job", "run_name", "run_id", "status", *varied, *shown, "error"]
    return pd.DataFrame(rows, columns=columns)


def pareto_table(runs: list[Run], sweep: config.SweepConfig) -> pd.DataFrame:
    """The non-dominated FINISHED, non-pruned children (`selection.pareto_front`), best first by the `first`
    rule: run id, job, the params the sweep varied and each objective."""
    varied = swept_params(runs)
    rows = [
        {
            "run_id": run.info.run_id,
            "job": int(run.data.tags.get("hydra_job_num", "0")),
            **{key: run.data.params.get(key) for key in varied},
            **{metric: run.data.metrics[metric] for metric in sweep.metrics},
        }
        for run in selection.pareto_front(runs, sweep)
    ]
    return pd.DataFrame(rows, columns=["run_id", "job", *varied, *sweep.metrics])


def pareto_plot(frame: pd.DataFrame, front: pd.DataFrame, sweep: config.SweepConfig, path: Path) -> None:
    """Every finished job as a point and the front highlighted and joined, one panel per pair of objectives
    (one panel for two), each axis labelled with its objective's direction."""
    from matplotlib.figure import Figure

    from logitlab import plots

    done = frame[(frame["status"] == "FINISHED") & frame[list(sweep.metrics)].notna().all(axis=1)]
    pairs = list(itertools.combinations(range(len(sweep.metrics)), 2))
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(5 * cols, 4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    y_labels: list[str] = []
    for ax, (i, j) in zip(axes.ravel(), pairs, strict=False):
        x, y = sweep.metrics[i], sweep.metrics[j]
        ax.scatter(done[x], done[y], color="0.6", label="jobs")
        joined = front.sort_values([x, y])
        ax.plot(joined[x], joined[y], "o-", color="tab:red", label="Pareto front")
        ax.set_xlabel(f"{x} ({sweep.directions[i]})")
        ax.set_ylabel(f"{y} ({sweep.directions[j]})")
        ax.legend(loc="best")
        y_labels += [f"{tick:g}" for tick in ax.get_yticks()]
    for ax in axes.ravel()[len(pairs) :]:
        ax.set_visible(False)
    fig.suptitle(f"Pareto front: {len(front)} of {len(done)} finished jobs")
    fig.subplots_adjust(**plots.grid_margins(fig, rows, cols, y_labels, []))
    plots.save(fig, path)


def to_html(frame: pd.DataFrame, metric: str) -> str:
    body = frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.4f}", border=0, escape=True)
    # ranked by `table`: the metric in the sweep's direction, ties to the lower val_log_loss, failed jobs last
    return (
        "<!doctype html><meta charset='utf-8'><title>Sweep</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}</style>"
        f"<h1>Sweep: {len(frame)} jobs, ranked by {escape(metric)}</h1>{body}"
    )


def comparison_plot(frame: pd.DataFrame, metric: str, path: Path) -> None:
    """One panel per swept param: the metric of each finished job against that param's value.

    Margins are set in inches, sized from the longest tick label (`plots.grid_margins`): a tight layout drew the
    figure once more to measure it, a third of the summary's time in a small sweep."""
    from matplotlib.figure import Figure

    from logitlab import plots

    ok = frame[frame["status"] == "FINISHED"]
    varied = [c for c in frame.columns if "." in c]
    if ok.empty or metric not in ok or not varied:
        return
    cols = min(3, len(varied))
    rows = math.ceil(len(varied) / cols)
    fig = Figure(figsize=(PANEL_IN[0] * cols, PANEL_IN[1] * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    y_labels: list[str] = []
    rotated: list[str] = []
    for ax, param in zip(axes.ravel(), varied, strict=False):
        values = pd.to_numeric(ok[param], errors="coerce")
        if values.notna().all():
            ax.scatter(values, ok[metric])
            if values.min() > 0 and values.max() / values.min() >= 100:
                ax.set_xscale("log")
        else:
            labels = [_label(value) for value in ok[param]]
            order = sorted(set(labels))
            ax.scatter([order.index(v) for v in labels], ok[metric])
            turn = max(map(len, order)) > LONG_TICK_LABEL
            ax.set_xticks(range(len(order)), order, rotation=30 if turn else 0, ha="right" if turn else "center")
            rotated += order if turn else []
        ax.set_xlabel(param)
        ax.set_ylabel(metric)
        y_labels += [f"{tick:g}" for tick in ax.get_yticks()]
    for ax in axes.ravel()[len(varied) :]:
        ax.set_visible(False)
    fig.suptitle(f"{metric} by swept parameter")
    fig.subplots_adjust(**plots.grid_margins(fig, rows, cols, y_labels, rotated))
    plots.save(fig, path)


def _label(value: object) -> str:
    """A param's value as a plot label: a job that lacks the param (another data set's key) reads `unset`.
    (pandas' `astype(str)` keeps a missing value as float NaN, which cannot be sorted among strings.)"""
    return "unset" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
