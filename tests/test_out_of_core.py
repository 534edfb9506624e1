"""Out-of-core training: a fit over parquet row groups is the in-memory fit (full-batch solvers), the
streamed minibatch fit is deterministic and learns, the chunked pipeline runs through the real stages,
and memory stays bounded by the chunk, not the file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from sklearn.datasets import make_classification

from logitlab import LogisticRegression, ParquetChunks
from logitlab.errors import LogitlabError

from .conftest import logitlab, make_project
from .tolerances import summation_tolerance

pytestmark = pytest.mark.timeout(600)


def write_chunks(path: Path, frame: pd.DataFrame, rows_per_group: int) -> ParquetChunks:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=rows_per_group)
    return ParquetChunks(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, ParquetChunks, ParquetChunks]:
    X, y = make_classification(3000, 6, n_informative=4, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)])
    frame["target"] = y
    folder = tmp_path_factory.mktemp("chunks")
    return frame, write_chunks(folder / "train.parquet", frame, 400), write_chunks(folder / "val.parquet", frame, 700)


@pytest.mark.parametrize(
    "params",
    [
        {"solver": "gd", "max_iter": 300, "tol": 0},
        {"solver": "gd", "max_iter": 100, "tol": 0, "penalty": "elasticnet", "C": 0.1, "update": "nesterov"},
        {"solver": "lbfgs", "max_iter": 100, "tol": 1e-8},
        {"solver": "newton", "max_iter": 30, "tol": 1e-12, "class_weight": "balanced"},
        {"solver": "newton", "max_iter": 30, "tol": 1e-5, "dtype": "float32"},
        {"solver": "newton-cg", "max_iter": 30, "tol": 1e-10},
        {"solver": "gd", "max_iter": 100, "tol": 1e-6, "learning_rate": "auto", "update": "accelerated"},
    ],
    ids=["gd", "gd-elasticnet-nesterov", "lbfgs", "newton-balanced", "newton-float32", "newton-cg", "gd-auto-fista"],
)
def test_chunked_fit_equals_in_memory_fit(data, params) -> None:
    frame, chunks, val = data
    X, y = frame.drop(columns="target"), frame["target"].to_numpy()
    memory = LogisticRegression(**params).fit(X, y, X_val=X, y_val=y)
    chunked = LogisticRegression(**params).fit(chunks, X_val=val)
    assert chunked.n_iter_ == memory.n_iter_
    # Row groups of 400 against one pass over 3,000 rows, in every iteration the fits ran.
    tol = summation_tolerance(params.get("dtype", "float64"), len(frame), memory.n_iter_)
    np.testing.assert_allclose(chunked.coef_, memory.coef_, rtol=0, atol=tol)
    np.testing.assert_allclose(chunked.intercept_, memory.intercept_, rtol=0, atol=tol)
    np.testing.assert_allclose(chunked.cost_history_, memory.cost_history_, rtol=tol)
    np.testing.assert_allclose(chunked.val_history_, memory.val_history_, rtol=tol)
    assert chunked.coef_.dtype == np.dtype(params.get("dtype", "float64"))
    assert list(chunked.feature_names_in_) == list(X.columns) and chunked.n_features_in_ == 6
    np.testing.assert_array_equal(chunked.predict(X), memory.predict(X))


def test_streamed_minibatch_is_deterministic_and_learns(data) -> None:
    frame, chunks, val = data
    params = {"solver": "minibatch", "update": "momentum", "learning_rate": 0.005, "max_iter": 15, "tol": 0}
    first = LogisticRegression(**params, random_state=3).fit(chunks, X_val=val)
    again = LogisticRegression(**params, random_state=3).fit(chunks, X_val=val)
    other = LogisticRegression(**params, random_state=4).fit(chunks, X_val=val)
    np.testing.assert_array_equal(first.coef_, again.coef_)
    assert first.cost_history_ == again.cost_history_
    assert not np.array_equal(first.coef_, other.coef_)
    optimum = LogisticRegression(solver="lbfgs", tol=1e-8).fit(frame.drop(columns="target"), frame["target"])
    assert first.cost_history_[-1] < optimum.cost_history_[-1] + 2e-3
    assert first.score(frame.drop(columns="target"), frame["target"]) > 0.7


def test_chunked_input_mistakes_are_named(data, tmp_path: Path) -> None:
    frame, chunks, _ = data
    with pytest.raises(LogitlabError, match="pass no y"):
        LogisticRegression().fit(chunks, frame["target"])
    with pytest.raises(LogitlabError, match="sample_weight"):
        LogisticRegression().fit(chunks, sample_weight=np.ones(len(frame)))
    with pytest.raises(LogitlabError, match="needs X_val"):
        LogisticRegression(early_stopping=True).fit(chunks)
    with pytest.raises(LogitlabError, match="requires y to be passed"):
        LogisticRegression().fit(frame.drop(columns="target"))
    with pytest.raises(LogitlabError, match="no target column 'label'"):
        ParquetChunks(chunks.path, target="label")
    text = frame.assign(f0=frame["f0"].astype(str))
    pq.write_table(pa.Table.from_pandas(text, preserve_index=False), tmp_path / "text.parquet")
    with pytest.raises(LogitlabError, match=r"column 'f0'.*not numeric"):
        ParquetChunks(tmp_path / "text.parquet")
    one = frame.assign(target=0)
    with pytest.raises(LogitlabError, match="at least two"):
        LogisticRegression().fit(write_chunks(tmp_path / "one.parquet", one, 500))


# ----------------------------------------------------------------------- the stages, streamed
def csv_text(n_rows: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n_rows), rng.normal(size=n_rows)
    colour = rng.choice(["red", "green", "blue"], size=n_rows)
    b_text = np.where(rng.random(n_rows) < 0.02, "", b.round(5).astype(str))  # a few missing values
    label = np.where(a + 0.5 * b + (colour == "red") + rng.logistic(size=n_rows) * 0.3 > 0, "yes", "no")
    rows = (f"{x:.5f},{y},{c},{lab}" for x, y, c, lab in zip(a, b_text, colour, label, strict=True))
    return "a,b,colour,label\n" + "\n".join(rows) + "\n"


def stage_params(project: Path, *overrides: str) -> None:
    from logitlab.config import compose

    params = compose(
        [
            "data=csv",
            "data.path=data/raw/external/big.csv",
            "data.target=label",
            "data.chunk_rows=500",
            "preprocess.numeric_impute=mean",
            "model=minibatch",
            "model.max_iter=20",
            "features=poly2",
            "mlflow=off",
            *overrides,
        ],
        project / "conf",
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


STAGES = ("ingest", "preprocess", "feature_engineer", "train", "evaluate")


@pytest.fixture(scope="module")
def streamed_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = make_project(tmp_path_factory.mktemp("ooc") / "project")
    (project / "data/raw/external/big.csv").write_text(csv_text(4000))
    stage_params(project)
    for stage in STAGES:
        logitlab([f"stages.{stage}"], project)
    return project


def test_chunked_csv_through_the_stages_gives_a_working_model(streamed_project: Path) -> None:
    project = streamed_project
    assert pq.ParquetFile(project / "data/raw/dataset.parquet").num_row_groups == 8
    for split in ("train", "val", "test"):
        assert pq.ParquetFile(project / f"data/processed/{split}.parquet").num_row_groups == 8
    report = json.loads((project / "reports/preprocess.json").read_text())
    assert sum(report["rows"].values()) == 4000 and report["one_hot"] == {"colour": ["blue", "green", "red"]}
    assert report["imputed"]["b"] == pytest.approx(0, abs=0.1)  # the mean of a standard normal column
    metrics = json.loads((project / "reports/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85 and metrics["n_iter"] == 20
    schema = json.loads((project / "data/raw/schema.json").read_text())
    assert schema["n_rows"] == 4000 and schema["labels"] == {"positive": "yes", "negative": "no"}
    from logitlab.scoring import ScoringPipeline

    pipeline = ScoringPipeline.load(project / "models")
    raw = pd.DataFrame({"a": [2.0, -2.0], "b": [1.0, None], "colour": ["red", "blue"]})
    assert pipeline.predict_frame(raw)["label"].tolist() == ["yes", "no"]


def test_streamed_preprocess_matches_in_memory_statistics(streamed_project: Path) -> None:
    """The streamed Preprocessor state equals one fitted in memory on the same training rows."""
    from logitlab.transforms import Preprocessor

    project = streamed_project
    state = json.loads((project / "data/interim/preprocessor.json").read_text())
    streamed = Preprocessor.from_dict(state)
    interim = pd.read_parquet(project / "data/interim/train.parquet")
    raw_b = interim["b"] * streamed.numeric["b"]["scale"] + streamed.numeric["b"]["shift"]
    tol = summation_tolerance(raw_b.dtype, len(raw_b))  # chunk by chunk against one pass over the rows
    assert raw_b.mean() == pytest.approx(streamed.numeric["b"]["shift"], abs=tol * raw_b.abs().max())
    memory = Preprocessor("standard", "mean").fit(pd.DataFrame({"b": raw_b}))
    assert memory.numeric["b"]["scale"] == pytest.approx(streamed.numeric["b"]["scale"], rel=tol)


def test_streamed_stage_mistakes_are_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project / "data/raw/external/big.csv").write_text(csv_text(2000))
    stage_params(project, "preprocess.numeric_impute=median")
    logitlab(["stages.ingest"], project)
    done = logitlab(["stages.preprocess"], project, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        "error: preprocess.numeric_impute=median needs every training row in memory and data.chunk_rows streams "
        "them; set preprocess.numeric_impute=mean"
    ]
    lines = csv_text(2000).splitlines()
    lines[1500] = "?,1.0,red,yes"  # a marker in the 4th chunk: column a turns text there
    (project / "data/raw/external/big.csv").write_text("\n".join(lines) + "\n")
    done = logitlab(["stages.ingest"], project, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
    assert "column 'a'" in errors[0] and "changes type between chunks" in errors[0] and "data.na_values" in errors[0]


# ------------------------------------------------------------------------------- bounded memory
PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    from logitlab import LogisticRegression, ParquetChunks
    chunks = ParquetChunks(sys.argv[1])
    LogisticRegression(solver=sys.argv[2], max_iter=2, tol=0, batch_size=256, random_state=0).fit(
        chunks, X_val=chunks
    )
    with open("/proc/self/status") as status:
        print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
    """
)


def peak_rss_mb(script: str, *args: str) -> float:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024


@pytest.mark.parametrize("solver", ["minibatch", "lbfgs"])
def test_peak_memory_is_bounded_by_the_chunk_not_the_file(tmp_path: Path, solver: str) -> None:
    """~400 MB of float64 data in row groups of 4 MB: the fit's peak RSS stays near the bare imports."""
    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(0)
    n_features, rows_per_group = 50, 10_000
    schema = pa.schema([*(pa.field(f"f{j}", pa.float64()) for j in range(n_features)), ("target", pa.int64())])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for _ in range(100):
            X = rng.normal(size=(rows_per_group, n_features))
            y = (X[:, 0] + rng.logistic(size=rows_per_group) > 0).astype(np.int64)
            columns = {f"f{j}": X[:, j] for j in range(n_features)}
            writer.write_table(pa.table({**columns, "target": y}, schema=schema))
    data_mb = 100 * rows_per_group * n_features * 8 / 2**20
    baseline = peak_rss_mb(
        "import logitlab, pyarrow.parquet, sklearn; print(open('/proc/self/status').read()"
        ".split('VmHWM:')[1].split()[0])"
    )
    peak = peak_rss_mb(PEAK_SCRIPT, str(path), solver)
    assert peak - baseline < 100, (peak, baseline, data_mb)
    assert data_mb > 350


SWEEP_PEAK = textwrap.dedent(
    """
    import atexit, runpy, sys

    def peak():
        with open("/proc/self/status") as status:
            print("PEAK_KB", next(line.split()[1] for line in status if line.startswith("VmHWM:")))

    atexit.register(peak)
    sys.argv = ["logitlab.sweep", *sys.argv[1:]]
    runpy.run_module("logitlab.sweep", run_name="__main__")
    """
)


def numeric_csv(path: Path, n_rows: int, n_features: int = 12) -> float:
    """A labelled CSV of `n_rows` written block by block; its size in MB."""
    rng = np.random.default_rng(0)
    with open(path, "w") as out:
        out.write(",".join([*(f"f{j}" for j in range(n_features)), "label"]) + "\n")
        for start in range(0, n_rows, 100_000):
            X = rng.normal(size=(min(100_000, n_rows - start), n_features)).round(6)
            frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(n_features)])
            frame["label"] = np.where(X[:, 0] + rng.logistic(size=len(X)) > 0, "yes", "no")
            frame.to_csv(out, header=False, index=False)
    return path.stat().st_size / 2**20


def sweep_peak_mb(project: Path, csv: Path, name: str) -> float:
    """Peak resident memory of one `python -m logitlab.sweep` job (no -m: the job runs in that process)."""
    overrides = [
        "data=csv",
        f"data.path={csv}",
        "data.target=label",
        "data.chunk_rows=20000",
        "preprocess.numeric_impute=mean",
        "model=lbfgs",
        "model.max_iter=3",
        "mlflow=off",
        f"hydra.run.dir=outputs/{name}",
    ]
    done = subprocess.run(
        [sys.executable, "-c", SWEEP_PEAK, *overrides], cwd=project, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split("PEAK_KB")[-1].split()[0]) / 1024


def test_a_streamed_sweep_job_peaks_by_the_chunk_not_the_file(tmp_path: Path) -> None:
    """`data.chunk_rows` streams a sweep job through every stage as it streams `dvc repro`: the job's peak
    memory on a ~100 MB CSV stays within a small margin of the same job on a CSV of one chunk's size."""
    project = make_project(tmp_path / "project")
    small, big = project / "data/raw/external/small.csv", project / "data/raw/external/big.csv"
    numeric_csv(small, 20_000)
    size_mb = numeric_csv(big, 900_000)
    baseline = sweep_peak_mb(project, small, "small")
    peak = sweep_peak_mb(project, big, "big")
    print(f"CSV {size_mb:.0f} MB: peak {peak:.0f} MB, one-chunk baseline {baseline:.0f} MB")
    assert size_mb > 90
    assert peak - baseline < 0.5 * size_mb, (peak, baseline, size_mb)
    metrics = json.loads((project / "outputs/big/reports/metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.6 and metrics["n_iter"] == 3
    entries = list(project.glob(".cache/logitlab/feature-engineer/*/data/processed/train.parquet"))
    assert len(entries) == 2 and max(pq.ParquetFile(path).num_row_groups for path in entries) == 45
