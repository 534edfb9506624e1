"""Does k-fold cross-validation pick a steadier configuration than one validation split? (docs/cross_validation.md)

For each seed (a different split of the data), the same grid of configurations is run through the pipeline
twice, as a sweep runs it (`executor.run_job`, upstream stages shared through the memo): once ranked by
`val_accuracy` on the single validation split, once ranked by `cv_accuracy_mean` over k folds of train+val
(ties to the lower log loss, as `tracking.selection` breaks them). The test accuracy of each seed's chosen
configuration is recorded; the spread of those accuracies across seeds is what the page reports.

    .venv/bin/python scripts/cv_selection_study.py --data ../shared/data/sonar.csv --seeds 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from logitlab import config
from logitlab.sweeps import executor

GRID = {"model.C": ["0.01", "0.1", "1", "10", "100"], "features.degree": ["1", "2"]}


def run(data: Path, seed: int, overrides: list[str], root: Path) -> dict[str, Any]:
    params = config.compose(
        ["data=sonar", f"data.path={data}", "mlflow=off", f"seed={seed}", *overrides],
        config_dir=Path(__file__).resolve().parents[1] / "conf",
    )
    job_config = executor.JobConfig.of(params)
    job = executor.run_job(job_config, root / "job", root=root, finish=lambda finish, files: None)  # no figures
    return job.metrics


def chosen(results: list[tuple[str, dict[str, Any]]], metric: str, tie_break: str) -> tuple[str, dict[str, Any]]:
    return min(results, key=lambda item: (-item[1][metric], item[1][tie_break]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the Sonar CSV (sonar.all-data)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the per-seed results here as JSON")
    args = parser.parse_args()
    grid = [
        [f"{key}={value}" for key, value in zip(GRID, values, strict=True)]
        for values in itertools.product(*GRID.values())
    ]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for seed in range(args.seeds):
            single = [(" ".join(o), run(args.data, seed, o, root)) for o in grid]
            folded = [
                (" ".join(o), run(args.data, seed, [*o, f"preprocess.cv_folds={args.folds}"], root)) for o in grid
            ]
            by_split, split_metrics = chosen(single, "val_accuracy", "val_log_loss")
            by_cv, cv_metrics = chosen(folded, "cv_accuracy_mean", "cv_log_loss_mean")
            refit = dict(folded)[by_split]  # the split's choice refit on train+val, as the folded runs are
            rows.append(
                {
                    "seed": seed,
                    "split_choice": by_split,
                    "split_test_accuracy": split_metrics["test_accuracy"],
                    "split_refit_test_accuracy": refit["test_accuracy"],
                    "cv_choice": by_cv,
                    "cv_test_accuracy": cv_metrics["test_accuracy"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| selected by | mean test accuracy | std across seeds | min | max | distinct choices |")
    print("|---|---|---|---|---|---|")
    for label, key, choice in (
        ("val_accuracy (one split), fitted on train", "split_test_accuracy", "split_choice"),
        ("val_accuracy (one split), refit on train+val", "split_refit_test_accuracy", "split_choice"),
        (f"cv_accuracy_mean ({args.folds} folds), refit on train+val", "cv_test_accuracy", "cv_choice"),
    ):
        values = [row[key] for row in rows]
        print(
            f"| {label} | {statistics.mean(values):.4f} | {statistics.pstdev(values):.4f} | {min(values):.4f} | "
            f"{max(values):.4f} | {len({row[choice] for row in rows})} |"
        )
    wins = sum(row["cv_test_accuracy"] > row["split_refit_test_accuracy"] for row in rows)
    losses = sum(row["cv_test_accuracy"] < row["split_refit_test_accuracy"] for row in rows)
    print(
        f"\nboth refit on train+val, the cross-validated choice scores better on {wins} seeds, worse on {losses}, "
        f"the same on {len(rows) - wins - losses}"
    )


if __name__ == "__main__":
    main()
