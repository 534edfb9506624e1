"""Regenerate the tutorial's pictures (docs/images/tutorial-*.png) from a real sweep.

    .venv/bin/python scripts/make_tutorial_figures.py                 # fresh copy of the repo + `make sweep`'s grid
    .venv/bin/python scripts/make_tutorial_figures.py --sweep-dir multirun/2026-01-01/12-00-00-1a2b3c   # reuse a sweep

By default the repository's files (as git sees them: tracked + untracked, not ignored) are copied into a
temporary directory and the `make sweep` grid runs there, tracked in that copy's own MLflow store, so your
mlflow.db, registry and multirun/ are left alone. Everything is seeded: the same code gives the same
pictures. The figures are the pipeline's own: each job's reports/figures/decision_boundary.png and
reports/cost_history.csv, and the sweep's summary/sweep_comparison.png.

  tutorial-decision-boundary.png  degree 1 vs degree 3 on circles (learning rate 1)
  tutorial-loss-curves.png        train_loss per epoch for learning rates 0.01, 0.1 and 1 (degree 3)
  tutorial-sweep-comparison.png   the sweep's own comparison plot of all nine jobs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["data=circles", "model.learning_rate=0.01,0.1,1", "features.degree=1,2,3"]  # = `make sweep`
LEARNING_RATES = (0.01, 0.1, 1.0)
BOUNDARY_LR = 1.0
BOUNDARY_DEGREES = (1, 3)
LOSS_DEGREE = 3


def copy_repo(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    )
    for name in listed.stdout.splitlines():
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def run_sweep(project: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_TRACKING", "DVC_", "LOGITLAB_"))}
    env.update(DO_NOT_TRACK="1", DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true")
    print(f"running `python -m logitlab.sweep -m {' '.join(SWEEP)}` in {project}", flush=True)
    # every job's figures, not only the best's
    command = [sys.executable, "-m", "logitlab.sweep", "-m", *SWEEP, "mlflow.child_artifacts=all"]
    subprocess.run(command, cwd=project, env=env, check=True)
    (parent_file,) = project.glob("multirun/*/*/mlflow_parent.json")
    return parent_file.parent


def jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """Each job of the sweep: its directory, learning rate, degree and metrics."""
    import yaml

    found = []
    for job_dir in sorted(p for p in sweep_dir.iterdir() if (p / ".hydra" / "config.yaml").is_file()):
        cfg = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
        metrics_file = job_dir / "reports" / "metrics.json"
        if not metrics_file.is_file():
            continue  # a failed job
        found.append(
            {
                "dir": job_dir,
                "lr": float(cfg["model"]["learning_rate"]),
                "degree": int(cfg["features"]["degree"]),
                "data": cfg["data"]["name"],
                "metrics": json.loads(metrics_file.read_text(encoding="utf-8")),
            }
        )
    return found


def pick(found: list[dict[str, Any]], lr: float, degree: int) -> dict[str, Any]:
    matches = [j for j in found if abs(j["lr"] - lr) < 1e-12 and j["degree"] == degree]
    if len(matches) != 1:
        raise SystemExit(f"the sweep has {len(matches)} finished jobs with learning_rate={lr}, degree={degree}; need 1")
    return matches[0]


def decision_boundaries(found: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from logitlab import plots

    picked = [pick(found, BOUNDARY_LR, d) for d in BOUNDARY_DEGREES]
    fig, axes = plt.subplots(1, len(picked), figsize=(6 * len(picked), 5))
    for ax, job in zip(axes, picked, strict=True):
        ax.imshow(mpimg.imread(job["dir"] / "reports" / "figures" / "decision_boundary.png"))
        ax.set_axis_off()
        m = job["metrics"]
        scores = f"val_accuracy {m['val_accuracy']:.3f}, test_accuracy {m['test_accuracy']:.3f}"
        ax.set_title(f"features.degree={job['degree']}: {scores}", fontsize=11)
    fig.suptitle(f"circles, model.learning_rate={BOUNDARY_LR:g}: each job's reports/figures/decision_boundary.png")
    fig.tight_layout()
    return plots.save(fig, out / "tutorial-decision-boundary.png")


def loss_curves(found: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib.pyplot as plt
    import pandas as pd

    from logitlab import plots

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for lr in LEARNING_RATES:
        job = pick(found, lr, LOSS_DEGREE)
        history = pd.read_csv(job["dir"] / "reports" / "cost_history.csv")
        label = f"learning_rate={lr:g} ({len(history)} epochs, val_accuracy {job['metrics']['val_accuracy']:.3f})"
        ax.plot(history["epoch"], history["train_loss"], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("epoch (log scale)")
    ax.set_ylabel("train_loss")
    ax.set_title(f"circles, features.degree={LOSS_DEGREE}: train_loss per epoch (reports/cost_history.csv)")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    return plots.save(fig, out / "tutorial-loss-curves.png")


def sweep_comparison(sweep_dir: Path, out: Path) -> Path | None:
    source = sweep_dir / "summary" / "sweep_comparison.png"
    if not source.is_file():
        print(f"no {source}: skipping tutorial-sweep-comparison.png", file=sys.stderr)
        return None
    target = out / "tutorial-sweep-comparison.png"
    shutil.copyfile(source, target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep-dir", type=Path, help="use this finished sweep (multirun/<date>/<time>-<id>) instead")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary project copy (its path is printed)")
    args = parser.parse_args()

    tmp = None
    if args.sweep_dir:
        sweep_dir = args.sweep_dir.resolve()
    else:
        tmp = Path(tempfile.mkdtemp(prefix="logitlab-tutorial-"))
        sweep_dir = run_sweep(copy_repo(tmp / "project"))
    try:
        found = jobs(sweep_dir)
        if {j["data"] for j in found} != {"circles"}:
            raise SystemExit(f"{sweep_dir}: expected a sweep on data=circles, got {sorted({j['data'] for j in found})}")
        args.out.mkdir(parents=True, exist_ok=True)
        written = [
            decision_boundaries(found, args.out),
            loss_curves(found, args.out),
            sweep_comparison(sweep_dir, args.out),
        ]
        for path in written:
            if path is not None:
                print(f"wrote {path}")
    finally:
        if tmp is not None:
            if args.keep:
                print(f"kept the project copy {tmp / 'project'}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
