"""Out-of-core benchmark: a CSV of `size_gb` through the five stages, streamed, with peak memory per stage.

Generates the CSV chunk by chunk (never in memory as a whole), writes a params.yaml for `data=csv` with
`data.chunk_rows`, runs `python -m logitlab.stages.<stage>` for each stage as a child process and reads
that child's own peak RSS from `os.wait4`. The data is logistic with known weights, so the accuracy says
whether the streamed minibatch fit learned them.

    python tests/benchmarks/out_of_core.py --size-gb 5            # prints a table, deletes the data after
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

REPO = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "preprocess", "feature_engineer", "train", "evaluate")
ENV = {"DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


def write_csv(path: Path, size_gb: float, n_features: int, seed: int = 0, rows_per_write: int = 200_000) -> int:
    """A logistic data set of about `size_gb` GB (six decimals per value) written in pieces; its row count."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0.0, 1.0, n_features) / np.sqrt(n_features) * 3
    names = [f"x{j}" for j in range(n_features)]
    target_bytes, rows = size_gb * 1e9, 0
    with open(path, "wb") as sink:
        while sink.tell() < target_bytes:
            X = rng.normal(0.0, 1.0, (rows_per_write, n_features)).round(6)
            proba = 1.0 / (1.0 + np.exp(-(X @ weights + 0.3)))
            labels = np.where(rng.random(rows_per_write) < proba, "yes", "no")
            table = pa.table({**{name: X[:, j] for j, name in enumerate(names)}, "label": labels})
            pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=rows == 0, quoting_style="none"))
            rows += rows_per_write
    return rows


def write_params(project: Path, csv: Path, chunk_rows: int, model: dict[str, Any]) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from logitlab.config import compose

    overrides = [
        "data=csv",
        f"data.path={csv}",
        "data.target=label",
        "data.positive_label=yes",
        f"data.chunk_rows={chunk_rows}",
        "preprocess.numeric_impute=mean",
        "model=minibatch",
        "mlflow=off",
        *(f"model.{key}={value}" for key, value in model.items()),
    ]
    params = compose(overrides, REPO / "conf")
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# The child reports its own high-water mark (VmHWM): the parent's rusage would count the parent's pages
# that a forked child holds until its exec.
PEAK_REPORTER = """
import atexit, runpy, sys

def report_peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                sys.stderr.write(f"PEAK_RSS_KB {line.split()[1]}\\n")

atexit.register(report_peak)
runpy.run_module(sys.argv[1], run_name="__main__", alter_sys=True)
"""


def run_stage(stage: str, project: Path) -> tuple[float, float]:
    """Run one stage as a child process; (wall seconds, the child's peak RSS in MB)."""
    env = {**os.environ, **ENV, "LOGITLAB_ROOT": str(project)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_REPORTER, f"logitlab.stages.{stage}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} exited {done.returncode}:\n{done.stderr[-3000:]}")
    peak_kb = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB ")]
    return seconds, int(peak_kb[-1]) / 1024


def measure(
    workdir: Path,
    size_gb: float = 5.0,
    n_features: int = 30,
    chunk_rows: int = 250_000,
    epochs: int = 3,
    batch_size: int = 512,
    keep: bool = False,
) -> dict[str, Any]:
    """Generate the CSV in `workdir`, run the streamed pipeline on it; sizes, per-stage wall time and peak
    RSS (MB), epochs and test accuracy. The data files are deleted unless `keep`."""
    project = Path(workdir) / "project"
    project.mkdir(parents=True, exist_ok=True)
    csv = Path(workdir) / "big.csv"
    start = time.perf_counter()
    n_rows = write_csv(csv, size_gb, n_features)
    result: dict[str, Any] = {
        "csv_gb": csv.stat().st_size / 1e9,
        "rows": n_rows,
        "features": n_features,
        "chunk_rows": chunk_rows,
        "generate_s": time.perf_counter() - start,
        "stages": {},
    }
    try:
        write_params(project, csv, chunk_rows, {"max_iter": epochs, "batch_size": batch_size, "learning_rate": 0.05})
        for stage in STAGES:
            seconds, peak_mb = run_stage(stage, project)
            result["stages"][stage] = {"seconds": seconds, "peak_rss_mb": peak_mb}
        result["parquet_gb"] = {
            path.relative_to(project).as_posix(): path.stat().st_size / 1e9
            for path in sorted((project / "data").rglob("*.parquet"))
        }
        metrics = json.loads((project / "reports/metrics.json").read_text())
        result.update(
            epochs=metrics["n_iter"], test_accuracy=metrics["test_accuracy"], test_roc_auc=metrics["test_roc_auc"]
        )
    finally:
        if not keep:
            csv.unlink(missing_ok=True)
            shutil.rmtree(project / "data", ignore_errors=True)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        f"CSV {result['csv_gb']:.2f} GB, {result['rows']:,} rows x {result['features']} features, "
        f"chunk_rows={result['chunk_rows']:,} (generated in {result['generate_s']:.0f} s)",
        f"{'stage':<18}{'wall s':>10}{'peak RSS MB':>14}",
    ]
    for stage, row in result["stages"].items():
        lines.append(f"{stage:<18}{row['seconds']:>10.1f}{row['peak_rss_mb']:>14.0f}")
    total = sum(row["seconds"] for row in result["stages"].values())
    lines.append(f"{'total':<18}{total:>10.1f}{max(r['peak_rss_mb'] for r in result['stages'].values()):>14.0f}")
    lines.append(
        f"epochs={result['epochs']}  test_accuracy={result['test_accuracy']:.4f}  "
        f"test_roc_auc={result['test_roc_auc']:.4f}"
    )
    lines += [f"  {name}: {size:.2f} GB" for name, size in result["parquet_gb"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=5.0)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        result = measure(Path(workdir), args.size_gb, args.features, args.chunk_rows, args.epochs, args.batch_size)
    print(table(result))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
