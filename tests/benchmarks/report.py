"""Turn the recorded benchmark rows into reports/bench/results.md and its figures (ratios, not absolutes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Rows = list[dict[str, Any]]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}"
    return "" if value is None else str(value)


def _floor(sections: dict[str, Rows], shape: str, dtype: str = "float64") -> float | None:
    return next((r["seconds"] for r in sections.get("floor", []) if r["shape"] == shape and r["dtype"] == dtype), None)


def _row_floor(sections: dict[str, Rows], row: dict[str, Any]) -> float | None:
    """The floor timed with the row (interleaved), else the separately timed one of older results."""
    return row.get("floor") or _floor(sections, row["shape"], row.get("dtype", "float64"))


def _ratio(seconds: float, reference: float | None) -> float | None:
    return seconds / reference if reference else None


def solvers(sections: dict[str, Rows], section: str = "solvers") -> str:
    rows = sections.get(section, [])
    out = []
    for shape in dict.fromkeys(r["shape"] for r in rows):
        theirs = [r["seconds"] for r in rows if r["shape"] == shape and r["library"] == "scikit-learn"]
        fastest = min(theirs) if theirs else None
        for r in (r for r in rows if r["shape"] == shape):
            out.append(
                [
                    shape,
                    f"{r['library']} {r['solver']}",
                    r["tol"],
                    r["iterations"],
                    r["seconds"],
                    r["gap"],
                    _ratio(r["seconds"], fastest),
                ]
            )
    return _table(["N x D", "solver", "tol", "iterations", "time s", "objective gap", "x sklearn fastest"], out)


def epochs(sections: dict[str, Rows]) -> str:
    out = [
        [
            r["shape"],
            "yes" if r.get("in_cache") else "no",
            r["solver"],
            r["dtype"],
            r["batch_size"] or "full",
            r.get("epoch_loss") or "",
            r["seconds"],
            _ratio(r["seconds"], _row_floor(sections, r)),
        ]
        for r in sections.get("epochs", [])
    ]
    header = ["N x D", "X in half the L3", "solver", "dtype", "batch", "epoch_loss", "epoch s", "x matvec floor"]
    return _table(header, out)


def sgd(sections: dict[str, Rows]) -> str:
    """Our batch-32 epochs against SGDClassifier's epoch: per-batch overhead, per 32 samples on both sides."""
    out = []
    for r in sections.get("sgd", []):
        n_samples = int(r["shape"].split("x")[0])
        batches = -(-n_samples // 32)
        out.append([r["shape"], r["library"], "1 (per sample)", r["seconds"], r["seconds"] / batches * 1e6, 1.0])
        ours = [e for e in sections.get("epochs", []) if e["batch_size"] == 32 and e["shape"] == r["shape"]]
        for e in ours:
            label = f"logitlab minibatch, epoch_loss={e['epoch_loss']}"
            out.append([e["shape"], label, 32, e["seconds"], e["seconds"] / batches * 1e6, e["seconds"] / r["seconds"]])
    return _table(["N x D", "", "batch", "epoch s", "us per 32 samples", "x SGDClassifier"], out)


def defaults(sections: dict[str, Rows]) -> str:
    rows = sections.get("defaults", [])
    theirs = next((r["seconds"] for r in rows if r["library"].startswith("scikit-learn")), None)
    out = [
        [
            r["data"],
            r["library"],
            r["iterations"],
            r["seconds"],
            _ratio(r["seconds"], theirs),
            r["gap"],
            r["accuracy"],
            r["optimum_accuracy"],
        ]
        for r in rows
    ]
    header = ["data", "fit", "epochs", "time s", "x sklearn default", "objective gap", "accuracy", "optimum's"]
    return _table(header, out)


def scaling(sections: dict[str, Rows]) -> str:
    out = []
    for r in sections.get("scaling", []):
        floor = _row_floor(sections, r)
        out.append([r["n"], r["d"], r["seconds"], floor, _ratio(r["seconds"], floor)])
    return _table(["N", "D", "gd epoch s", "floor s", "x floor"], out)


def selection(sections: dict[str, Rows]) -> str:
    """Issue 22's goals: each measure against its anchor, process start to exit, medians of interleaved rounds."""
    header = ["measure", "ours s", "anchor", "anchor s", "ratio", "goal", "met", "rounds", "load", "note"]
    keys = ["measure", "ours_s", "anchor", "anchor_s", "ratio", "goal", "met", "rounds", "load", "note"]
    return _table(header, [[r.get(key) for key in keys] for r in sections.get("model_selection", [])])


def generic(rows: Rows) -> str:
    header = list(dict.fromkeys(key for row in rows for key in row))
    return _table(header, [[row.get(key) for key in header] for row in rows])


TITLES = {
    "defaults": "The default configuration on real-shaped data (train stage's fit vs scikit-learn's default)",
    "solvers": "Time to scikit-learn's optimum (relative objective gap <= 1e-6)",
    "multinomial": "Multinomial (K classes): time to scikit-learn's multinomial optimum (relative gap <= 1e-6)",
    "float32": "float32 on request",
    "epochs": "Epoch cost against the matvec floor (X @ w + X.T @ r)",
    "sgd": "Batch 32 against scikit-learn's SGDClassifier (one sample per step)",
    "small": "Small data: one gd epoch on the default data's training split (700 x 2), fixed cost",
    "scaling": "Scaling of a gd epoch in N and D",
    "model_selection": "Model selection: sweeps and cross-validation against hand-written anchors (medians)",
    "sweeps": "Sweep overhead",
    "serving": "Serving under load (`make serve`, 20-row requests, keep-alive clients; x 1 worker at the same clients)",
    "serving_limits": "Serving: over-limit and invalid bodies (default limit 1 MiB)",
    "out_of_core": "Out of core",
    "dask": "Dask cluster",
}
RENDER = {
    "solvers": solvers,
    "multinomial": lambda sections: solvers(sections, "multinomial"),
    "epochs": epochs,
    "scaling": scaling,
    "sgd": sgd,
    "defaults": defaults,
    "model_selection": selection,
}


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    parts = [
        "# Benchmark results\n",
        "Made by `make bench` on: " + ", ".join(f"{k} {v}" for k, v in machine.items()) + ".\n",
        "Times are the best of several rounds; ratios are between timings of the same run.\n",
    ]
    sections = results["sections"]
    for name in [*TITLES, *(s for s in sections if s not in TITLES)]:
        if name == "floor" or name not in sections:
            continue
        render = RENDER.get(name)
        parts.append(f"\n## {TITLES.get(name, name)}\n\n")
        measured_on = results.get("section_machines", {}).get(name, machine)
        if measured_on != machine:
            parts.append("Measured on: " + ", ".join(f"{k} {v}" for k, v in measured_on.items()) + ".\n\n")
        parts.append(render(sections) if render else generic(sections[name]))
    return "".join(parts)


def figures(results: dict[str, Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    sections = results["sections"]
    rows = sections.get("scaling", [])
    if rows:
        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        for axis, varying, fixed in ((axes[0], "n", "d"), (axes[1], "d", "n")):
            values = [r[fixed] for r in rows]
            fixed_value = max(values, key=values.count)  # the curve: the most measured value of the other axis
            line = sorted((r[varying], r["seconds"], _row_floor(sections, r)) for r in rows if r[fixed] == fixed_value)
            axis.loglog([p[0] for p in line], [p[1] for p in line], "o-", label="gd epoch")
            axis.loglog([p[0] for p in line], [p[2] for p in line], "s--", label="X @ w + X.T @ r")
            axis.set_xlabel(f"{varying.upper()} ({fixed.upper()} = {fixed_value:,})")
            axis.set_ylabel("seconds")
            axis.legend()
            axis.grid(True, which="both", alpha=0.3)
            axis.xaxis.set_minor_formatter(NullFormatter())
        figure.suptitle("A gd epoch against the matvec floor, in N and in D (log-log)")
        figure.tight_layout()
        figure.savefig(out_dir / "scaling.png", dpi=100)
        plt.close(figure)
    rows = sections.get("solvers", [])
    if rows:
        shapes = list(dict.fromkeys(r["shape"] for r in rows))
        figure, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
        for axis, shape in zip(axes[0], shapes, strict=True):
            chosen = [r for r in rows if r["shape"] == shape]
            labels = [f"{'ours' if r['library'] == 'logitlab' else 'sklearn'}\n{r['solver']}" for r in chosen]
            colours = ["tab:blue" if r["library"] == "logitlab" else "tab:gray" for r in chosen]
            axis.bar(labels, [r["seconds"] for r in chosen], color=colours)
            axis.set_title(f"{shape}: time to optimum (gap <= 1e-6)")
            axis.set_ylabel("seconds")
        figure.tight_layout()
        figure.savefig(out_dir / "solvers.png", dpi=100)
        plt.close(figure)
