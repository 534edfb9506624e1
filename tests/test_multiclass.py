"""The pipeline with K labels and with k-fold cross-validation, stage by stage and through the sweep executor
(`executor.run_job`), without DVC: labels, splits, folds, metrics, tables, figures, the scoring pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris, load_wine, make_classification
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from logitlab import config, io, reports
from logitlab.errors import DataError
from logitlab.model import LogisticRegression
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET, CsvChunks
from logitlab.stages import feature_engineer, ingest, preprocess, train
from logitlab.sweeps import executor

from .conftest import REPO


def csv_config(path: Path, target: str, **overrides: object) -> config.CsvData:
    return config.data_config({"name": "csv", "source": "csv", "path": str(path), "target": target, **overrides})


def run_job(root: Path, *overrides: str) -> executor.JobResult:
    params = config.compose(["mlflow=off", *overrides], config_dir=REPO / "conf")
    return executor.run_job(executor.JobConfig.of(params), root / "job", root=root)


@pytest.fixture(scope="module")
def csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Multiclass CSVs of different shapes: text labels, numeric labels in a middle column, and imbalanced
    classes with text features and missing values."""
    folder = tmp_path_factory.mktemp("csvs")
    X, y = load_iris(return_X_y=True, as_frame=True)
    X.assign(species=np.array(["setosa", "versicolor", "virginica"])[y]).to_csv(folder / "iris.csv", index=False)
    X, y = load_wine(return_X_y=True, as_frame=True)
    wine = X.copy()
    wine.insert(4, "cultivar", y + 1)
    wine.to_csv(folder / "wine.csv", index=False)
    rng = np.random.default_rng(0)
    X, y = make_classification(
        1200,
        6,
        n_informative=4,
        n_classes=5,
        n_clusters_per_class=1,
        weights=[0.4, 0.25, 0.15, 0.12, 0.08],
        class_sep=0.9,
        random_state=1,
    )
    mixed = pd.DataFrame(X * rng.uniform(0.1, 50, 6), columns=[f"m{i}" for i in range(6)])
    mixed["colour"] = np.where(y % 2 == 0, rng.choice(["red", "blue"], y.size), rng.choice(["blue", "green"], y.size))
    mixed.loc[rng.random(y.size) < 0.05, "m1"] = np.nan
    mixed["grade"] = np.array([3, 5, 8, 10, 12])[y]
    mixed.to_csv(folder / "grades.csv", index=False)
    return {"iris": folder / "iris.csv", "wine": folder / "wine.csv", "grades": folder / "grades.csv"}


# ------------------------------------------------------------------------------------------------ labels
def test_more_than_two_labels_is_multiclass_and_a_named_label_keeps_it_binary(csvs) -> None:
    frame, schema = ingest.run(csv_config(csvs["grades"], "grade"), REPO)
    assert schema["task"] == "multiclass" and schema["labels"] == {"classes": [3, 5, 8, 10, 12]}  # by number
    raw = pd.read_csv(csvs["grades"])
    np.testing.assert_array_equal(frame[TARGET], raw["grade"].map({3: 0, 5: 1, 8: 2, 10: 3, 12: 4}))
    assert schema["class_counts"] == {
        str(k): int(v) for k, v in enumerate(raw["grade"].value_counts(sort=False).sort_index())
    }
    binary, named = ingest.run(csv_config(csvs["grades"], "grade", positive_label=12), REPO)
    assert named["task"] == "binary" and named["labels"] == {"positive": 12, "negative": "10|3|5|8"}
    np.testing.assert_array_equal(binary[TARGET], (raw["grade"] == 12).astype(int))


def test_streamed_labels_take_the_in_memory_codes(csvs, tmp_path: Path) -> None:
    whole, schema = ingest.run(csv_config(csvs["wine"], "cultivar"), REPO)
    chunks = CsvChunks(csv_config(csvs["wine"], "cultivar", chunk_rows=100), REPO)
    streamed = pd.concat(list(chunks), ignore_index=True)
    assert chunks.labels == schema["labels"] == {"classes": [1, 2, 3]}
    np.testing.assert_array_equal(streamed[TARGET], whole[TARGET])
    # A value first met in a later chunk takes the next code; the schema lists the classes in code order.
    late = tmp_path / "late.csv"
    late.write_text(
        "a,label\n" + "".join(f"{i},{'xy'[i % 2]}\n" for i in range(100)) + "".join(f"{i},a\n" for i in range(100))
    )
    chunks = CsvChunks(csv_config(late, "label", chunk_rows=100), REPO)
    codes = pd.concat(list(chunks), ignore_index=True)[TARGET]
    assert chunks.labels == {"classes": ["x", "y", "a"]} and chunks.class_counts == {0: 50, 1: 50, 2: 100}
    assert codes.tolist() == [0, 1] * 50 + [2] * 100


def test_a_class_too_rare_for_three_splits_stays_in_train() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2, 3], [60, 40, 20, 2])
    raw = pd.DataFrame({"x": rng.normal(size=y.size), TARGET: y})
    parts = preprocess.split(raw, config.PreprocessConfig(), seed=3)
    assert sorted(pd.concat(parts.values()).index) == list(range(y.size))
    assert set(parts["train"][TARGET]) == {0, 1, 2, 3}
    assert abs(len(parts["test"]) - 0.2 * y.size) <= 2 and abs(len(parts["val"]) - 0.2 * y.size) <= 2
    _, _, report, _ = preprocess.run(raw, config.PreprocessConfig(), seed=3)
    assert report["task"] == "multiclass" and report["class_rows"]["train"]["3"] >= 1


# ---------------------------------------------------------------------------------------- k-fold folds
def test_folds_are_stratified_and_each_preprocessed_on_its_training_part_only() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [90, 60, 50])
    raw = pd.DataFrame({"x": rng.normal(5, 3, y.size) + y, "colour": rng.choice(["a", "b"], y.size), TARGET: y})
    cfg = config.PreprocessConfig(cv_folds=4)
    splits, _, report, folds = preprocess.run(raw, cfg, seed=0)
    assert len(splits["val"]) == 0 and len(splits["train"]) == report["rows"]["train"] == 160  # train + val
    assert report["cv_folds"] == 4 and len(folds) == 4
    rest = splits["train"]
    assert abs(rest["x"].mean()) < 1e-12  # the model's preprocessing: fitted on all of train+val
    held_out = pd.concat([fold["val"] for fold in folds])
    assert len(held_out) == 160 and sorted(held_out[TARGET]) == sorted(rest[TARGET])  # a partition
    for fold in folds:
        assert len(fold["train"]) + len(fold["val"]) == 160
        counts = np.bincount(fold["val"][TARGET], minlength=3)
        assert np.all(np.abs(counts - np.bincount(rest[TARGET]) / 4) <= 1)  # stratified
        assert abs(fold["train"]["x"].mean()) < 1e-12 and abs(fold["train"]["x"].std(ddof=0) - 1) < 1e-12
        assert abs(fold["val"]["x"].mean()) > 1e-6  # scaled by the training part's statistics, not its own
    with pytest.raises(DataError, match=r"preprocess.cv_folds=60 needs at least 60 rows of every class"):
        preprocess.run(raw, config.PreprocessConfig(cv_folds=60), seed=0)


def test_fold_expansion_and_cross_validated_scores() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame[TARGET] = (frame["a"] ** 2 + frame["b"] > 0.5).astype(int)
    fold = {"train": frame.iloc[:90], "val": frame.iloc[90:]}
    expanded = feature_engineer.expand_fold(fold, config.FeaturesConfig(degree=2))
    assert list(expanded["val"].columns) == ["a", "b", "a^2", "a b", "b^2", TARGET]
    params = {"solver": "lbfgs", "tol": 1e-8, "random_state": 0}
    scores, histories = train.cross_validate([train.FoldArrays.of(expanded)] * 2, params, n_classes=2)
    model = LogisticRegression(**params).fit(expanded["train"].drop(columns=[TARGET]), expanded["train"][TARGET])
    assert scores[0] == reports.fold_scores(model, *reports.split_xy(expanded["val"]), 2) == scores[1]
    assert list(histories[0].columns) == ["epoch", "train_loss", "val_loss"] and histories[0]["val_loss"].notna().all()
    summary = reports.cv_summary(
        [{"accuracy": 0.5, "log_loss": 1.0, "roc_auc": 0.6}, {"accuracy": 0.7, "log_loss": 2.0, "roc_auc": 0.8}]
    )
    assert (
        summary["cv_accuracy_mean"] == 0.6 and summary["cv_accuracy_std"] == 0.1 and summary["cv_log_loss_std"] == 0.5
    )


def test_roc_auc_is_sklearns_macro_one_vs_rest() -> None:
    rng = np.random.default_rng(3)
    proba = rng.dirichlet(np.ones(4), size=200)
    y = rng.integers(0, 4, 200)
    from sklearn.metrics import roc_auc_score

    assert reports.roc_auc(y, proba) == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("case", ["random", "ties", "a class never predicted", "one class in y"])
def test_the_scalar_metrics_are_sklearns(n_classes: int, case: str) -> None:
    """`reports` counts its metrics with numpy (scikit-learn's input checks were most of a small split's
    scoring): the same values as scikit-learn's, ties in the scores and zero divisions included."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, 300)
    proba = rng.dirichlet(np.ones(n_classes), size=300)
    if case == "ties":
        proba = np.round(proba, 1)
        proba /= proba.sum(axis=1, keepdims=True)
    if case == "a class never predicted":
        proba[:, 0] = 0.0
        proba /= proba.sum(axis=1, keepdims=True)
    if case == "one class in y":
        y[:] = 1
    model = LogisticRegression()
    model.threshold = 0.5
    chosen = reports.predicted(model, proba)
    result: dict[str, float | int] = {}
    reports._ranking_metrics(result, "test", y, proba, chosen)
    labels = list(range(n_classes))
    score = proba[:, 1] if n_classes == 2 else proba
    assert reports.log_loss(y, proba) == pytest.approx(skm.log_loss(y, score, labels=labels), rel=1e-12)
    assert reports.log_loss(y, proba, normalize=False) == pytest.approx(
        skm.log_loss(y, score, labels=labels, normalize=False), rel=1e-12
    )
    if case == "one class in y":
        assert "test_roc_auc" not in reports._finish(result, fitted_stub())
    elif n_classes == 2:
        assert result["test_roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), rel=1e-12)
    else:
        assert result["test_roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), rel=1e-12)
    expected = {
        "test_f1_macro": skm.f1_score(y, chosen, average="macro", zero_division=0),
        "test_f1_weighted": skm.f1_score(y, chosen, average="weighted", zero_division=0),
    }
    if n_classes == 2:
        tn, fp, fn, tp = skm.confusion_matrix(y, chosen, labels=[0, 1]).ravel()
        expected |= {
            "test_precision": skm.precision_score(y, chosen, zero_division=0),
            "test_recall": skm.recall_score(y, chosen, zero_division=0),
            "test_f1": skm.f1_score(y, chosen, zero_division=0),
            "test_tn": tn,
            "test_fp": fp,
            "test_fn": fn,
            "test_tp": tp,
        }
    for key, value in expected.items():
        assert result[key] == pytest.approx(float(value), rel=1e-12, abs=1e-15), key
    # the per-class table and the calibration curve: the same divisions of the same counts and sums, to the bit
    table = reports.per_class(y, chosen, [f"class {k}" for k in labels])
    theirs = skm.precision_recall_fscore_support(y, chosen, labels=labels, zero_division=0)
    for column, their_column in zip(["precision", "recall", "f1", "support"], theirs, strict=True):
        np.testing.assert_array_equal(table[column].to_numpy(), their_column, err_msg=column)
    hit, confidence = (y, proba[:, 1]) if n_classes == 2 else ((chosen == y).astype(np.int64), proba.max(axis=1))
    if np.unique(hit).size == 2:
        from sklearn.calibration import calibration_curve

        for ours, their in zip(
            reports._calibration(hit, confidence, 10),
            calibration_curve(hit, confidence, n_bins=10, strategy="quantile"),
            strict=True,
        ):
            np.testing.assert_array_equal(ours, their)


def test_n_nonzero_coef_counts_every_classs_nonzero_weights_and_no_intercept() -> None:
    model = fitted_stub()
    model.coef_, model.intercept_ = np.array([[0.0, 1.0], [-2.0, 0.0], [0.0, 0.0]]), np.array([1.0, 1.0, 1.0])
    assert reports._finish({}, model)["n_nonzero_coef"] == 2


def fitted_stub() -> LogisticRegression:
    """A model with the fitted attributes `reports._finish` reads."""
    model = LogisticRegression()
    model.n_iter_, model.converged_, model.cost_history_ = 1, True, [0.5]
    model.coef_ = np.array([0.0, 1.5])
    return model


# ------------------------------------------------------------------------------------- the whole pipeline
@pytest.mark.parametrize("name, target", [("iris", "species"), ("wine", "cultivar"), ("grades", "grade")])
def test_multiclass_csv_within_one_and_a_half_points_of_sklearn(tmp_path: Path, csvs, name: str, target: str) -> None:
    job = run_job(tmp_path, "data=csv", f"data.path={csvs[name]}", f"data.target={target}")
    processed = {split: io.read_parquet(job.files["feature-engineer"].outputs[split]) for split in ("train", "test")}
    X, y = processed["train"].drop(columns=[TARGET]), processed["train"][TARGET]
    theirs = (
        SkLogisticRegression(max_iter=10_000)
        .fit(X, y)
        .score(processed["test"].drop(columns=[TARGET]), processed["test"][TARGET])
    )
    ours = job.metrics["test_accuracy"]
    print(f"{name}: logitlab {ours:.4f}, scikit-learn {theirs:.4f}")
    assert abs(ours - theirs) <= 0.015
    assert set(job.metrics) == set(config.METRICS) - set(config.BINARY_ONLY) - set(config.CV_METRICS)
    assert job.metrics["converged"] == 1


def test_multiclass_reports_tables_figures_and_scoring(tmp_path: Path, csvs) -> None:
    job = run_job(tmp_path, "data=csv", f"data.path={csvs['iris']}", "data.target=species", "features.include=[]")
    out = job.files["evaluate"].outputs
    names = ["setosa", "versicolor", "virginica"]
    assert io.read_json(job.files["preprocess"].outputs["report"])["task"] == "multiclass"
    per_class = pd.read_csv(out["per_class"])
    assert per_class["class"].tolist() == names and per_class["support"].sum() == 30
    assert set(io.read_json(out["per_class_metrics"])) == set(names)
    confusion = pd.read_csv(out["curves"] / "confusion.csv")
    assert set(confusion["actual"]) == set(names) and len(confusion) == 30
    assert (confusion["actual"] == confusion["predicted"]).mean() == pytest.approx(job.metrics["test_accuracy"])
    assert set(pd.read_csv(out["curves"] / "roc_ovr.csv")["class"]) == set(names)
    coefficients = pd.read_csv(out["coefficients"])
    assert list(coefficients.columns) == ["feature", "class", "coefficient"] and len(coefficients) == 3 * 5
    figures = {p.name for p in out["figures"].iterdir()}
    assert {"roc.png", "confusion.png", "calibration.png", "precision_recall.png", "decision_boundary.png"} <= figures
    scoring = ScoringPipeline.load(job.files["train"].outputs["model"])
    raw = pd.read_csv(csvs["iris"]).drop(columns=["species"]).head(7)
    frame = scoring.predict_frame(raw)
    assert list(frame.columns) == ["label", *(f"probability_{n}" for n in names)]
    np.testing.assert_allclose(frame.iloc[:, 1:].sum(axis=1), 1.0)
    assert set(frame["label"]) == {"setosa"}  # the first rows of iris


def test_decision_regions_for_two_feature_multiclass_data(tmp_path: Path) -> None:
    X, y = make_classification(
        300, 2, n_informative=2, n_redundant=0, n_classes=3, n_clusters_per_class=1, random_state=4
    )
    path = tmp_path / "two.csv"
    pd.DataFrame({"u": X[:, 0], "v": X[:, 1], "kind": np.array(["a", "b", "c"])[y]}).to_csv(path, index=False)
    job = run_job(tmp_path, "data=csv", f"data.path={path}", "data.target=kind", "features.degree=2")
    assert (job.files["evaluate"].outputs["figures"] / "decision_boundary.png").stat().st_size > 10_000


def test_streamed_multiclass_pipeline_scores_like_in_memory(tmp_path: Path, csvs) -> None:
    common = ["data=csv", f"data.path={csvs['grades']}", "data.target=grade", "preprocess.numeric_impute=mean"]
    streamed = run_job(tmp_path / "streamed", *common, "data.chunk_rows=300")
    whole = run_job(tmp_path / "whole", *common)
    assert io.row_groups(streamed.files["feature-engineer"].outputs["train"]) > 1
    report = io.read_json(streamed.files["preprocess"].outputs["report"])
    assert report["task"] == "multiclass" and all(v > 0 for v in report["class_rows"]["train"].values())
    assert abs(streamed.metrics["test_accuracy"] - whole.metrics["test_accuracy"]) < 0.05
    assert set(streamed.metrics) == set(whole.metrics)


def test_cross_validation_on_sonar(tmp_path: Path, sonar: Path) -> None:
    job = run_job(tmp_path, "data=sonar", f"data.path={sonar}", "preprocess.cv_folds=5")
    metrics = job.metrics
    for name in config.CV_METRICS:
        assert np.isfinite(metrics[name])
    assert 0.6 < metrics["cv_accuracy_mean"] < 1 and 0 < metrics["cv_accuracy_std"] < 0.2
    assert not any(key.startswith("val_") for key in metrics)  # the validation split joined training
    report = io.read_json(job.files["preprocess"].outputs["report"])
    assert report["rows"] == {"train": 166, "val": 0, "test": 42} and len(report["fold_rows"]) == 5
    cv = job.files["train"].outputs["cv"]
    assert sorted(p.name for p in cv.glob("fold-*-cost_history.csv")) == [
        f"fold-{i}-cost_history.csv" for i in range(5)
    ]
    processed = job.files["feature-engineer"].outputs
    assert len(io.read_parquet(processed["train"])) == 166 and len(io.read_parquet(processed["val"])) == 0
    assert preprocess.fold_count(processed["folds"]) == 5
    history = pd.read_csv(job.files["train"].outputs["cost_history"])
    assert history["val_loss"].isna().all()  # the refit on train+val has no held-out rows left
