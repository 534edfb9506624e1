"""Figures for DVC and MLflow: deterministic PNGs (no timestamps), drawn with matplotlib's Agg backend.

Every sweep job draws all of them, so each is drawn once: margins are fixed, or sized from the length of
labels that come from the data (a tight layout or a tight bounding box costs one extra draw each), titles
sit at a set height (the same pixels, 11% less time), and PNG compression is fast.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from logitlab.io import atomic_path

# Subplot margins (fractions of the figure) that fit a title, axis labels and numeric tick labels.
FIXED_MARGINS = {"left": 0.12, "right": 0.96, "bottom": 0.11, "top": 0.92}
CHAR_WIDTH_IN = 0.075  # a tick label character at the default 10 pt, on average
GRID_POINTS = 120  # per axis of the decision-boundary grid: smooth contours at the figure's 100 dpi


_processes = 1  # how many processes `save_all` draws on (`drawn_on`)


def save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}, pil_kwargs={"compress_level": 1})
    plt.close(fig)  # figures made through pyplot (Optuna's views of a study) stay registered until closed
    return Path(path)


@contextlib.contextmanager
def drawn_on(processes: int) -> Iterator[None]:
    """Within: `save_all` draws on `processes` processes (1 or 2). For a process whose machine has nothing else
    to do meanwhile: the figure helper at an untracked sweep's end, which the sweep only waits for."""
    global _processes
    previous, _processes = _processes, processes
    try:
        yield
    finally:
        _processes = previous


def save_all(figures: Sequence[tuple[Callable[[], Figure], Path]]) -> None:
    """Make and save each figure: here, or (`drawn_on(2)`) every other one in a forked copy of this process
    meanwhile, which has matplotlib imported and the figures' data read already: a job's seven take ~0.4 s
    one after another. A figure the copy did not save is made here again, so its error is raised here."""
    if _processes < 2 or len(figures) < 2 or not hasattr(os, "fork"):
        for make, path in figures:
            save(make(), path)
        return
    child = os.fork()
    if child == 0:  # the copy: its own figures, then gone without running this process's exit handlers
        saved = False
        try:
            for make, path in figures[1::2]:
                save(make(), path)
            saved = True
        finally:
            os._exit(0 if saved else 1)
    try:
        for make, path in figures[0::2]:
            save(make(), path)
    finally:
        _, status = os.waitpid(child, 0)
    if status != 0:
        for make, path in figures[1::2]:
            save(make(), path)


def _figure(
    draw: Callable[[Axes], None],
    title: str,
    size: tuple[float, float] = (6, 4.5),
    margins: dict[str, float] = FIXED_MARGINS,
) -> Figure:
    """A figure outside pyplot's registry."""
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    draw(ax)
    ax.set_title(title, y=1.0)  # a set position skips the automatic one, which measures every tick label again
    fig.subplots_adjust(**margins)
    return fig


def _label_room(labels: list[str]) -> float:
    """Inches left of an axis that fit its longest tick label and the axis label."""
    return 0.55 + CHAR_WIDTH_IN * max(map(len, labels), default=1)


def _left_margin(labels: list[str], width: float) -> float:
    """The left margin (a fraction of `width` inches) that fits the longest y tick label and the axis label."""
    return min(0.6, _label_room(labels) / width)


def grid_margins(fig: Figure, rows: int, cols: int, y_labels: list[str], rotated_x: list[str]) -> dict[str, float]:
    """`subplots_adjust` arguments for a grid of panels with a suptitle, in inches: room for the longest y tick
    label and the axis label left of each panel, for x tick labels (`rotated_x`: the longest of those drawn at
    30 degrees) and the axis label below it. What a tight layout finds, without drawing the figure twice."""
    width, height = fig.get_size_inches()
    left = _label_room(y_labels)
    below = 0.6 + 0.5 * CHAR_WIDTH_IN * max(map(len, rotated_x), default=0)  # sin(30 degrees) of the label
    right, top = 0.2, 0.55
    axis_width = (width - left - right - (cols - 1) * left) / cols
    axis_height = (height - top - below - (rows - 1) * below) / rows
    return {
        "left": left / width,
        "right": 1 - right / width,
        "bottom": below / height,
        "top": 1 - top / height,
        "wspace": left / axis_width,
        "hspace": below / axis_height,
    }


def loss_curve(history: pd.DataFrame) -> Figure:
    def draw(ax: Axes) -> None:
        ax.plot(history["epoch"], history["train_loss"], label="train")
        if history["val_loss"].notna().any():
            ax.plot(history["epoch"], history["val_loss"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()

    return _figure(draw, "Loss per epoch")


def roc(curve: pd.DataFrame, auc: float, per_class: pd.DataFrame | None = None) -> Figure:
    """The ROC curve; with `per_class` (more than two classes) each class's one-vs-rest curve, and `curve`
    as their micro-average."""

    def draw(ax: Axes) -> None:
        if per_class is None:
            ax.plot(curve["fpr"], curve["tpr"], label=f"AUC = {auc:.3f}")
        else:
            for name, part in per_class.groupby("class", sort=False):
                ax.plot(part["fpr"], part["tpr"], linewidth=1, label=f"{name} vs rest")
            ax.plot(curve["fpr"], curve["tpr"], color="black", linestyle=":", label="micro-average")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize="small" if per_class is not None else None)

    title = "ROC (test)" if per_class is None else f"ROC one-vs-rest (test), macro AUC = {auc:.3f}"
    return _figure(draw, title)


def precision_recall(curve: pd.DataFrame, micro_average: bool = False) -> Figure:
    def draw(ax: Axes) -> None:
        ax.plot(curve["recall"], curve["precision"])
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.05)

    return _figure(draw, "Precision-recall (test" + (", micro-average)" if micro_average else ")"))


def confusion(rows: pd.DataFrame, labels: list[str]) -> Figure:
    """The K x K counts of (actual, predicted) label names, in the order of `labels`."""
    index = {name: i for i, name in enumerate(labels)}
    k = len(labels)
    matrix = np.zeros((k, k), dtype=np.int64)
    actual = rows["actual"].astype(str).map(index).to_numpy()
    chosen = rows["predicted"].astype(str).map(index).to_numpy()
    np.add.at(matrix, (actual, chosen), 1)
    size = max(4.5, 0.5 * k + 2.5)

    def draw(ax: Axes) -> None:
        ax.imshow(matrix, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=14 if k <= 4 else 9)
        ax.set_xticks(range(k), labels, rotation=0 if k <= 4 else 90)
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")

    left = _left_margin(list(labels), size)
    bottom = 0.14 if k <= 4 else min(0.4, (0.55 + CHAR_WIDTH_IN * max(map(len, labels))) / (size - 0.5))
    margins = {"left": left, "right": 0.95, "bottom": bottom, "top": 0.9}
    return _figure(draw, "Confusion matrix (test)", (size, size - 0.5), margins)


def calibration(curve: pd.DataFrame, top_label: bool = False) -> Figure:
    """Reliability diagram; `top_label` (more than two classes): the predicted class's probability against
    the fraction of those predictions that are right."""

    def draw(ax: Axes) -> None:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        ax.plot(curve["mean_predicted"], curve["fraction_positive"], marker="o", label="model")
        ax.set_xlabel("mean predicted probability" + (" of the predicted class" if top_label else ""))
        ax.set_ylabel("fraction correct" if top_label else "fraction of positives")
        ax.legend()

    return _figure(draw, "Calibration (test, top label)" if top_label else "Calibration (test)")


def coefficients(table: pd.DataFrame, top: int = 30) -> Figure:
    """The largest coefficients by magnitude; a multiclass table's bars are named "feature [class]"."""
    if "class" in table:
        table = table.assign(feature=table["feature"].astype(str) + " [" + table["class"].astype(str) + "]")
    shown = table.reindex(table["coefficient"].abs().sort_values(ascending=False).index).head(top)[::-1]

    def draw(ax: Axes) -> None:
        colors = np.where(shown["coefficient"] >= 0, "tab:blue", "tab:red")
        ax.barh(shown["feature"], shown["coefficient"], color=colors)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_xlabel("coefficient")

    height = max(3.0, 0.25 * len(shown) + 1)
    left = _left_margin(list(shown["feature"].astype(str)), 6)
    return _figure(
        draw,
        "Coefficients",
        (6, height),
        {"left": left, "right": 0.96, "bottom": 0.7 / height, "top": 1 - 0.45 / height},
    )


def placeholder(title: str, reason: str) -> Figure:
    """A figure that says why the plot it stands for cannot be drawn: a declared plot always exists, so
    `dvc plots show` never fails on it without saying which."""

    def draw(ax: Axes) -> None:
        ax.text(0.5, 0.5, reason, ha="center", va="center", wrap=True, fontsize=12)
        ax.set_axis_off()

    return _figure(draw, title)


def _grid(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """A GRID_POINTS x GRID_POINTS mesh over the first two columns, 10% beyond their range: the mesh's axes and
    its points as a frame the model can score."""
    a, b = points.columns[:2]
    pad_a = 0.1 * float(np.ptp(points[a])) or 1.0
    pad_b = 0.1 * float(np.ptp(points[b])) or 1.0
    grid_a, grid_b = np.meshgrid(
        np.linspace(points[a].min() - pad_a, points[a].max() + pad_a, GRID_POINTS),
        np.linspace(points[b].min() - pad_b, points[b].max() + pad_b, GRID_POINTS),
    )
    return grid_a, grid_b, pd.DataFrame({a: grid_a.ravel(), b: grid_b.ravel()})


def decision_boundary(
    points: pd.DataFrame, y: np.ndarray, proba_of: Callable[[pd.DataFrame], np.ndarray], title: str
) -> Figure:
    """Probability contours over the two input columns, with the 0.5 boundary and the points."""
    a, b = points.columns[:2]
    grid_a, grid_b, grid = _grid(points)
    proba = proba_of(grid).reshape(grid_a.shape)

    def draw(ax: Axes) -> None:
        filled = ax.contourf(grid_a, grid_b, proba, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(grid_a, grid_b, proba, levels=[0.5], colors="black", linewidths=1.5)
        ax.scatter(points[a], points[b], c=y, cmap="bwr", edgecolors="k", s=18)
        ax.set_xlabel(str(a))
        ax.set_ylabel(str(b))
        ax.figure.colorbar(filled, ax=ax, label="P(positive)")

    return _figure(draw, title, (6, 5), margins={**FIXED_MARGINS, "right": 1.0})


def decision_regions(
    points: pd.DataFrame, y: np.ndarray, predict: Callable[[pd.DataFrame], np.ndarray], names: list[str], title: str
) -> Figure:
    """The predicted class over the two input columns as coloured regions, with the points coloured by class:
    the multiclass decision boundary (`predict` gives class codes)."""
    a, b = points.columns[:2]
    grid_a, grid_b, grid = _grid(points)
    regions = predict(grid).reshape(grid_a.shape)
    k = len(names)
    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"].resampled(k)

    def draw(ax: Axes) -> None:
        ax.contourf(grid_a, grid_b, regions, levels=np.arange(k + 1) - 0.5, cmap=cmap, alpha=0.35)
        ax.contour(grid_a, grid_b, regions, levels=np.arange(k) + 0.5, colors="black", linewidths=1.0)
        ax.scatter(points[a], points[b], c=y, cmap=cmap, vmin=-0.5, vmax=k - 0.5, edgecolors="k", s=18)
        handles = [Patch(facecolor=cmap(i), edgecolor="k", label=name) for i, name in enumerate(names)]
        ax.legend(handles=handles, loc="best", fontsize="small")
        ax.set_xlabel(str(a))
        ax.set_ylabel(str(b))

    return _figure(draw, title, (6, 5))
