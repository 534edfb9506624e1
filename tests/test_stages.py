"""Each stage function on its own, on generated data, user CSVs and the Sonar data set."""

from __future__ import annotations

import codecs
import itertools
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from logitlab import config, io
from logitlab.errors import DataError, ModelFileError
from logitlab.scoring import ScoringPipeline
from logitlab.sources import TARGET, CsvChunks
from logitlab.stages import feature_engineer, ingest, preprocess
from logitlab.sweeps import executor

from .conftest import REPO

PRE = config.PreprocessConfig()
RAW_FEATURES = config.FeaturesConfig()


def csv_config(path: Path, **overrides: object) -> config.CsvData:
    raw = {"name": "csv", "source": "csv", "path": str(path), "target": "label", **overrides}
    return config.data_config(raw)


def data_config(*overrides: str) -> config.DataConfig:
    return ingest.settings(config.compose(list(overrides), config_dir=REPO / "conf"))


def fit_all(root: Path, *overrides: str) -> tuple[dict[str, pd.DataFrame], ScoringPipeline, dict]:
    """The whole pipeline for one config through the sweep executor (`executor.run_job`), in `root`: the
    processed splits, the saved scoring pipeline and the metrics."""
    params = config.compose(list(overrides), config_dir=REPO / "conf")
    job = executor.run_job(executor.JobConfig.of(params), root / "job", root=root)
    processed = {name: io.read_parquet(job.files["feature-engineer"].outputs[name]) for name in preprocess.SPLITS}
    return processed, ScoringPipeline.load(job.files["train"].outputs["model"]), job.metrics


# ------------------------------------------------------------------------------------------ ingest
@pytest.mark.parametrize("option", ["synthetic", "moons", "circles", "breast_cancer"])
def test_ingest_builtin_sources_give_binary_targets(option: str) -> None:
    frame, schema = ingest.run(data_config(f"data={option}"), REPO)
    assert set(frame[TARGET].unique()) == {0, 1}
    assert schema["n_rows"] == len(frame) and TARGET not in schema["columns"]


def test_ingest_csv_with_header_and_positive_label(tmp_path: Path) -> None:
    file = tmp_path / "d.csv"
    file.write_text("id,a,b,label\n1,0.5,x,yes\n2,1.5,y,no\n3,,x,yes\n4,2.5,y,maybe\n")
    frame, schema = ingest.run(csv_config(file, positive_label="yes", drop=["id"]), tmp_path)
    assert list(frame.columns) == ["a", "b", TARGET]
    assert frame[TARGET].tolist() == [1, 0, 1, 0]
    assert schema["labels"] == {"positive": "yes", "negative": "maybe|no"}


def test_ingest_csv_negative_label_and_na_values(tmp_path: Path) -> None:
    file = tmp_path / "d.csv"
    file.write_text("a;label\n?;a\n2;b\n3;c\n")
    frame, _ = ingest.run(csv_config(file, sep=";", na_values=["?"], negative_label="a"), tmp_path)
    assert frame["a"].isna().tolist() == [True, False, False]
    assert frame[TARGET].tolist() == [0, 1, 1]


def test_ingest_sonar_without_header(sonar: Path) -> None:
    frame, schema = ingest.run(data_config("data=sonar", f"data.path={sonar}"), REPO)
    assert frame.shape == (208, 61)
    assert int(frame[TARGET].sum()) == 111 and schema["labels"]["positive"] == "M"


@pytest.mark.parametrize(
    "content,overrides,message",
    [
        (None, {}, "not found"),
        ("", {}, "is empty"),
        ("a,b\n", {}, "no data rows|target"),
        ("a,b\n1,2\n", {}, r"data.target: column 'label' not in"),
        ("a,label\n1,x\n2,x\n", {}, "one class"),
        ("a,label\n1,x\n2,y\n", {"positive_label": "q"}, r"data.positive_label: 'q' does not occur"),
        ("a,label\n1,x\n2,\n", {}, "missing labels"),
    ],
)
def test_ingest_csv_errors_name_file_and_column(
    tmp_path: Path, content: str | None, overrides: dict, message: str
) -> None:
    file = tmp_path / "bad.csv"
    if content is not None:
        file.write_text(content)
    with pytest.raises(DataError, match=message):
        ingest.run(csv_config(file, **overrides), tmp_path)


SWISS = "city,x,label\n" + "".join(
    f"{city},{i},{'ab'[i % 2]}\n" for i, city in enumerate(["Zürich", "Genève", "Bern"] * 50)
)


def ingested(file: Path, **overrides: object) -> tuple[pd.DataFrame, dict]:
    """The CSV as ingest reads it, in memory or (with chunk_rows) chunk by chunk; the frame and its labels."""
    cfg = csv_config(file, **overrides)
    if isinstance(cfg, config.CsvData) and cfg.chunk_rows is not None:
        chunks = CsvChunks(cfg, file.parent)
        return pd.concat(list(chunks), ignore_index=True), chunks.labels
    frame, schema = ingest.run(cfg, file.parent)
    return frame, schema["labels"]


def one_hot_cities(file: Path, **overrides: object) -> list[str]:
    """The city column's categories in the preprocess report: the file's text as read."""
    frame, labels = ingested(file, **overrides)
    _, _, report, _ = preprocess.run(frame, PRE, seed=1, labels=labels)
    return report["one_hot"]["city"]


@pytest.mark.parametrize("chunk_rows", [None, 100])  # in memory, and streamed (a bad byte past the first chunk)
def test_a_csv_not_in_utf8_names_the_byte_and_data_encoding_then_reads_with_it(tmp_path: Path, chunk_rows) -> None:
    file = tmp_path / "swiss.csv"
    file.write_bytes(SWISS.encode("latin-1"))
    offset = SWISS.encode("latin-1").index("ü".encode("latin-1"))
    message = (
        f"data.path: CSV file '{file}' is not utf-8: byte 0xfc at offset {offset} does not decode; set data.encoding"
    )
    with pytest.raises(DataError, match=f"^{re.escape(message)}.*data.encoding=latin-1$"):
        ingested(file, chunk_rows=chunk_rows)
    assert one_hot_cities(file, encoding="latin-1", chunk_rows=chunk_rows) == ["Bern", "Genève", "Zürich"]
    if chunk_rows:
        late = tmp_path / "late.csv"
        late.write_bytes(SWISS.replace("Zürich", "Zurich").encode() + "Genève,1,a\n".encode("latin-1"))
        offset = late.read_bytes().index(b"\xe8", len(SWISS))
        with pytest.raises(DataError, match=f"byte 0xe8 at offset {offset} does not decode"):
            ingested(late, chunk_rows=chunk_rows)


def test_a_utf8_csv_with_a_byte_order_mark_reads_as_without(tmp_path: Path) -> None:
    file = tmp_path / "bom.csv"
    file.write_bytes(codecs.BOM_UTF8 + SWISS.encode())
    for chunk_rows in (None, 100):
        frame, _ = ingested(file, chunk_rows=chunk_rows)
        assert list(frame.columns) == ["city", "x", TARGET]  # no BOM in the first column's name
    assert one_hot_cities(file) == ["Bern", "Genève", "Zürich"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le"])  # with a byte-order mark, and without (NUL bytes)
def test_a_utf16_csv_gets_the_hint_then_reads_with_data_encoding(tmp_path: Path, codec: str) -> None:
    file = tmp_path / "wide.csv"
    file.write_bytes(SWISS.encode(codec))
    for chunk_rows in (None, 100):
        with pytest.raises(DataError, match=r"looks like UTF-16 .*; set data.encoding=utf-16$"):
            ingested(file, chunk_rows=chunk_rows)
    assert one_hot_cities(file, encoding=codec) == ["Bern", "Genève", "Zürich"]
    assert one_hot_cities(file, encoding=codec, chunk_rows=100) == ["Bern", "Genève", "Zürich"]


def test_an_unknown_encoding_is_refused_naming_data_encoding_and_is_part_of_the_ingest_key(tmp_path: Path) -> None:
    for name in ("latin-9000", "base64"):
        with pytest.raises(config.ConfigError, match=f"config key 'data.encoding': .*got '{name}'"):
            csv_config(tmp_path / "x.csv", encoding=name)
    file = tmp_path / "swiss.csv"
    file.write_bytes(SWISS.encode("latin-1"))
    keys = {executor.cache_key(ingest.STAGE, csv_config(file, encoding=e), [], tmp_path) for e in ("latin-1", "cp1252")}
    assert len(keys) == 2


# -------------------------------------------------------------------------------------- preprocess
def frame_of(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "cat": rng.choice(["red", "green", "blue"], size=n),
            TARGET: np.arange(n) % 2,
        }
    )


def test_split_is_stratified_seeded_and_sized() -> None:
    raw = frame_of(100)
    parts = preprocess.split(raw, PRE, seed=7)
    assert {k: len(v) for k, v in parts.items()} == {"train": 60, "val": 20, "test": 20}
    assert all(part[TARGET].mean() == 0.5 for part in parts.values())
    again = preprocess.split(raw, PRE, seed=7)
    assert all(parts[k].index.equals(again[k].index) for k in parts)


def test_preprocess_fits_on_train_only_imputes_encodes_and_drops_constants() -> None:
    raw = frame_of(100)
    raw.loc[::7, "num"] = np.nan
    raw["const"] = 3.0
    splits, _pre, report, _ = preprocess.run(raw, PRE, seed=1)
    train_num = splits["train"]["num"]
    assert abs(train_num.mean()) < 1e-12 and abs(train_num.std(ddof=0) - 1) < 1e-12
    assert "const" in report["dropped_constant"] and "const" not in splits["train"]
    assert report["one_hot"]["cat"] == ["blue", "green", "red"]
    assert "num" in report["imputed"]
    assert not any(frame.isna().any().any() for frame in splits.values())


def test_a_saved_preprocessor_transforms_as_the_fitted_one() -> None:
    """Its state goes through JSON with sorted keys (`io.write_json`), so its column sections come back in another
    order than the output's: every value must still land in its own column, and the one-hot columns must be
    the comparisons of the text with each category."""
    import json

    from logitlab.transforms import Preprocessor

    rng = np.random.default_rng(3)
    raw = pd.DataFrame(
        {
            "zeta": rng.normal(size=60),
            "colour": rng.choice(["red", "green", "blue"], size=60),
            "alpha": rng.normal(size=60) * 5 + 2,
            "city": rng.choice(["oslo", "lima", None], size=60),
        }
    )
    fitted = Preprocessor().fit(raw)
    loaded = Preprocessor.from_dict(json.loads(json.dumps(fitted.to_dict(), sort_keys=True)))
    assert list(loaded.numeric) != [c for c in fitted.output_columns if c in loaded.numeric]  # the order differs
    expected, again = fitted.transform(raw), loaded.transform(raw)
    pd.testing.assert_frame_equal(again, expected, check_exact=True)
    assert list(expected.columns) == fitted.output_columns
    np.testing.assert_allclose(expected["alpha"], (raw["alpha"] - raw["alpha"].mean()) / raw["alpha"].std(ddof=0))
    for name, spec in fitted.categorical.items():
        text = raw[name].fillna(spec["fill"])
        for value in spec["categories"]:
            np.testing.assert_array_equal(expected[f"{name}={value}"], (text == value).astype(float))


def test_the_logged_models_signature_takes_any_number_in_a_numeric_column() -> None:
    """MLflow's schema check (the one its scoring server and `pyfunc.predict` apply) passes integers to a float
    column and a missing value to an integer one: the model converts and imputes them itself. A text column
    stays text, and every column is optional (a missing one reaches `predict`, which names it)."""
    from mlflow.models.utils import _enforce_schema

    from logitlab.pyfunc_model import signature

    example = pd.DataFrame({"count": [1, 2, 3], "temp": [0.5, 1.5, 2.5], "city": ["oslo", "lima", "oslo"]})
    inputs = signature(example, ["probability"]).inputs
    assert [(spec.name, str(spec.type), spec.required) for spec in inputs] == [
        ("count", "Any", False),
        ("temp", "Any", False),
        ("city", "DataType.string", False),
    ]
    request = pd.DataFrame({"count": [np.nan, 4.0], "temp": [2, 3], "city": ["lima", "oslo"]})
    checked = _enforce_schema(request, inputs)
    pd.testing.assert_frame_equal(checked, request)


def test_a_text_column_encodes_the_same_as_objects_or_as_pandas_strings() -> None:
    """`Preprocessor.transform` fills and looks up a pandas string column as it is, and converts other kinds to
    text first: the same one-hot rows either way, missing values as the fill and unseen values as zeros."""
    _, pre, _, _ = preprocess.run(frame_of(100), PRE, seed=1)
    rows = pd.DataFrame({"num": [0.0, 1.0, 2.0], "cat": ["red", None, "purple"]})
    as_objects = pre.transform(rows.astype({"cat": object}))
    as_strings = pre.transform(rows.astype({"cat": "string"}))
    pd.testing.assert_frame_equal(as_objects, as_strings)
    assert as_objects.filter(like="cat=").to_numpy().sum(axis=1).tolist() == [1.0, 1.0, 0.0]


def test_unseen_category_encodes_as_zeros() -> None:
    _, pre, _, _ = preprocess.run(frame_of(100), PRE, seed=1)
    rows = pre.transform(pd.DataFrame({"num": [0.0], "cat": ["purple"]}))
    assert rows.filter(like="cat=").to_numpy().sum() == 0


@pytest.mark.parametrize(
    "column,values,message",
    [
        ("ids", lambda n: [f"user-{i}" for i in range(n)], "looks like an ID"),
        ("empty", lambda n: [np.nan] * n, "no values"),
        ("inf", lambda n: [np.inf] + [1.0] * (n - 1), "infinite"),
    ],
)
def test_preprocess_refuses_unusable_columns_by_name(column: str, values, message: str) -> None:
    raw = frame_of(100)
    raw[column] = values(100)
    with pytest.raises(DataError, match=rf"column '{column}'.*{message}|{message}.*"):
        preprocess.run(raw, PRE, seed=1)


@pytest.mark.parametrize("dtype", ["object", "string", "category"])
def test_undeclared_missing_markers_are_named_by_their_share_of_rows(dtype: str) -> None:
    """A text column is refused as numeric with markers when at least 90 % of its rows parse as numbers:
    counted by rows, not by distinct values (here 3 distinct numbers against 2 distinct markers)."""
    raw = frame_of(100)
    raw["size"] = pd.Series(["1.5", "2", "3e2"] * 30 + ["?"] * 6 + ["n/a"] * 4, dtype=dtype)
    if dtype == "category":
        raw["size"] = raw["size"].cat.add_categories(["unused"])
    with pytest.raises(DataError, match=re.escape("column 'size' is numeric but has non-numeric values ['?', 'n/a']")):
        preprocess.run(raw, PRE, seed=1)
    raw["size"] = pd.Series(["1.5", "2", "3e2"] * 29 + ["?"] * 13, dtype=dtype)  # 87 %: a text column
    preprocess.run(raw, PRE, seed=1)


def test_data_set_too_small_for_the_split() -> None:
    with pytest.raises(DataError, match="too small for the split"):
        preprocess.run(frame_of(5), PRE, seed=1)


# -------------------------------------------------------------------------------- feature-engineer
@pytest.mark.parametrize(("degree", "dtype"), [(1, "float64"), (2, "float64"), (1, "int64")])
def test_an_expansion_that_adds_nothing_links_its_tables_to_the_inputs(tmp_path: Path, degree: int, dtype: str) -> None:
    """Degree 1 (the default) leaves every table and fold as preprocess wrote it: feature-engineer's files are
    then the same files (hard links), not copies written again, and the tables are hashed without expanding
    them; any real expansion writes its own, and so does degree 1 on features that are not float64 (the
    expansion's output is)."""
    rng = np.random.default_rng(0)
    linked = degree == 1 and dtype == "float64"

    def table(rows: int) -> pd.DataFrame:
        features = rng.normal(size=(rows, 2)) * 10
        return pd.DataFrame(
            {"x0": features[:, 0].astype(dtype), "x1": features[:, 1].astype(dtype), TARGET: rng.integers(0, 2, rows)}
        )

    interim = tmp_path / "interim"
    for name in feature_engineer.SPLITS:
        io.write_parquet(interim / f"{name}.parquet", table(20))
    preprocess.write_folds(interim / "folds", [{"train": table(12), "val": table(4)} for _ in range(2)])
    files = feature_engineer.STAGE.resolve(
        {path: tmp_path / path.relative_to("data") for path in feature_engineer.STAGE.inputs.values()}, tmp_path
    )
    feature_engineer.execute(config.FeaturesConfig(degree=degree), files)
    pairs = [(files.inputs[name], files.outputs[name]) for name in feature_engineer.SPLITS]
    pairs += [
        (preprocess.fold_file(files.inputs["folds"], i, part), preprocess.fold_file(files.outputs["folds"], i, part))
        for i in range(2)
        for part in preprocess.FOLD_PARTS
    ]
    for source, output in pairs:
        assert output.samefile(source) is linked, output
        columns = ["x0", "x1", TARGET] if degree == 1 else ["x0", "x1", "x0^2", "x0 x1", "x1^2", TARGET]
        assert list(io.read_parquet(output).columns) == columns
    # the tables left unexpanded are hashed as the expansion would give them back: the same data_hash
    splits = {name: io.read_parquet(files.inputs[name]) for name in feature_engineer.SPLITS}
    _, _, expanded = feature_engineer.run(splits, config.FeaturesConfig(degree=degree))
    assert io.read_json(files.outputs["report"])["data_hash"] == expanded["data_hash"]
    # what the tables and folds hold is their expansion, linked or written
    splits = {name: io.read_parquet(files.inputs[name]) for name in feature_engineer.SPLITS}
    expanded, _, _ = feature_engineer.run(splits, config.FeaturesConfig(degree=degree))
    for name, frame in expanded.items():
        pd.testing.assert_frame_equal(io.read_parquet(files.outputs[name]), frame, check_exact=True)
    for index, fold in enumerate(preprocess.read_folds(files.inputs["folds"])):
        for part, frame in feature_engineer.expand_fold(fold, config.FeaturesConfig(degree=degree)).items():
            written = io.read_parquet(preprocess.fold_file(files.outputs["folds"], index, part))
            pd.testing.assert_frame_equal(written, frame, check_exact=True)
    assert preprocess.fold_count(files.outputs["folds"]) == 2
    assert not list(tmp_path.rglob("*.tmp")), "no temporary file left"


def test_polynomial_names_and_values() -> None:
    splits = {
        name: pd.DataFrame({"x0": [1.0, 2.0], "x1": [3.0, 4.0], TARGET: [0, 1]}) for name in ("train", "val", "test")
    }
    out, expander, report = feature_engineer.run(splits, config.FeaturesConfig(degree=2))
    assert expander.output_columns == ["x0", "x1", "x0^2", "x0 x1", "x1^2"]
    assert out["train"].loc[1, "x0 x1"] == 8.0 and out["train"].loc[1, "x1^2"] == 16.0
    assert report["n_features_out"] == 5
    only, _, _ = feature_engineer.run(splits, config.FeaturesConfig(degree=3, interaction_only=True))
    assert list(only["train"].columns) == ["x0", "x1", "x0 x1", TARGET]
    chosen, _, _ = feature_engineer.run(splits, config.FeaturesConfig(degree=3, include=["x1"]))
    assert list(chosen["train"].columns) == ["x0", "x1", "x1^2", "x1^3", TARGET]


def test_expansion_too_big_is_refused_before_allocating() -> None:
    wide = pd.DataFrame(np.zeros((3, 200)), columns=[f"x{i}" for i in range(200)])
    wide[TARGET] = [0, 1, 0]
    splits = {"train": wide, "val": wide, "test": wide}
    with pytest.raises(DataError, match=r"features.degree=4 .* features.max_features"):
        feature_engineer.run(splits, config.FeaturesConfig(degree=4))


def test_include_unknown_column() -> None:
    splits = {n: pd.DataFrame({"x0": [1.0], TARGET: [0]}) for n in ("train", "val", "test")}
    with pytest.raises(DataError, match=r"features\.include: column 'nope'"):
        feature_engineer.run(splits, config.FeaturesConfig(degree=2, include=["nope"]))


# ---------------------------------------------------------------------------------- train/evaluate
@pytest.mark.parametrize("model,epochs", [("gd", None), ("seed_guide", 1000)])
def test_default_pipeline_reaches_the_seed_guides_90_percent(tmp_path: Path, model: str, epochs: int | None) -> None:
    _, scoring, metrics = fit_all(tmp_path, f"model={model}")
    assert metrics["test_accuracy"] == pytest.approx(0.9, abs=1e-12)
    history = scoring.model.cost_history_
    assert len(history) == (epochs or scoring.model.n_iter_)
    if epochs:  # plain steps of the seed guides' model: the loss falls every epoch
        assert all(b <= a for a, b in itertools.pairwise(history))
    else:  # the default (accelerated, step 1/L) converges in tens of epochs, rippling as momentum methods do
        assert scoring.model.converged_ and scoring.model.n_iter_ < 100
        assert history[-1] == pytest.approx(min(history), rel=1e-6)
    expected = {
        "train_accuracy",
        "val_accuracy",
        "test_accuracy",
        "test_roc_auc",
        "test_log_loss",
        "test_precision",
        "test_recall",
        "test_f1",
        "test_tn",
        "test_fp",
        "test_fn",
        "test_tp",
    }
    assert expected <= set(metrics)
    assert metrics["test_tn"] + metrics["test_fp"] + metrics["test_fn"] + metrics["test_tp"] == 200
    assert set(metrics) == set(config.METRICS) - set(config.CV_METRICS)


def test_feature_engineering_makes_circles_separable(tmp_path: Path) -> None:
    _, _, linear = fit_all(tmp_path, "data=circles")
    _, _, quadratic = fit_all(tmp_path, "data=circles", "features.degree=2")
    assert linear["test_accuracy"] < 0.65
    assert quadratic["test_accuracy"] > 0.97


@pytest.mark.parametrize("degree", [1, 2])
def test_sonar_within_one_and_a_half_points_of_scikit_learn(tmp_path: Path, sonar: Path, degree: int) -> None:
    processed, _, ours = fit_all(tmp_path, "data=sonar", f"data.path={sonar}", f"features.degree={degree}")
    X, y = processed["train"].drop(columns=[TARGET]), processed["train"][TARGET]
    reference = SkLogisticRegression(C=1.0, max_iter=10_000).fit(X, y)
    Xt, yt = processed["test"].drop(columns=[TARGET]), processed["test"][TARGET]
    theirs = reference.score(Xt, yt)
    print(f"sonar degree {degree}: logitlab {ours['test_accuracy']:.4f}, scikit-learn {theirs:.4f}")
    assert abs(ours["test_accuracy"] - theirs) <= 0.015


def test_scoring_pipeline_round_trip_scores_raw_rows(tmp_path: Path) -> None:
    raw, _ = ingest.run(data_config("data=moons"), REPO)
    _, scoring, _ = fit_all(tmp_path, "data=moons", "features.degree=3")
    scoring.save(tmp_path / "model")
    loaded = ScoringPipeline.load(tmp_path / "model")
    rows = raw.drop(columns=[TARGET]).head(20)
    np.testing.assert_array_equal(loaded.predict_proba(rows), scoring.predict_proba(rows))
    assert set(loaded.predict_frame(rows)["label"]) <= {"0", "1"}


def test_a_fit_that_differs_in_the_last_bit_writes_the_same_model_files(tmp_path: Path) -> None:
    """What another CPU's BLAS or SIMD loops change in a fit (a bit or two of each number) does not reach the
    files the train stage writes, which dvc.lock records; what the rounding costs is far below any tolerance."""
    from logitlab.model import LogisticRegression
    from logitlab.stages import train

    X, y = np.random.default_rng(0).normal(size=(200, 6)), np.arange(200) % 2
    model = LogisticRegression(solver="gd", max_iter=40, tol=0).fit(X, y)
    fitted = model.coef_.copy()
    other = LogisticRegression(solver="gd", max_iter=40, tol=0).fit(X, y)
    other.coef_, other.intercept_ = np.nextafter(other.coef_, np.inf), np.nextafter(other.intercept_, -np.inf)
    other.cost_history_ = [float(np.nextafter(value, 0.0)) for value in other.cost_history_]
    assert not np.array_equal(other.coef_, model.coef_)
    for fit, folder in ((model, tmp_path / "a"), (other, tmp_path / "b")):
        train.portable(fit)
        fit.save(folder / "model")
    for name in ("model.npz", "model.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    np.testing.assert_allclose(model.coef_, fitted, rtol=2.0**-train.PORTABLE_BITS, atol=0)
    assert not np.array_equal(model.coef_, fitted), "the written numbers are rounded"
    single = LogisticRegression(solver="gd", max_iter=5, tol=0, dtype="float32").fit(X, y)
    kept = single.coef_.copy()
    train.portable(single)
    np.testing.assert_array_equal(single.coef_, kept)  # float32 has fewer bits than are kept: unchanged
    _, written, _ = fit_all(tmp_path / "stage", "data=moons")  # what the train stage itself writes
    for values in (written.model.coef_, written.model.intercept_, np.asarray(written.model.cost_history_)):
        np.testing.assert_array_equal(train._rounded(values), values)


def test_loading_a_folder_without_a_model_says_where_models_are(tmp_path: Path) -> None:
    """A sweep job saves its pipeline in `<job>/models/`; given `<job>/model` (or the job folder) the error names
    that folder, and says where `dvc repro` and a sweep job save theirs."""
    _, scoring, _ = fit_all(tmp_path, "data=moons")
    job = tmp_path / "multirun" / "2026-01-01" / "00-00-00" / "3"
    scoring.save(job / "models")
    for given in (job / "model", job):
        with pytest.raises(ModelFileError) as refused:
            ScoringPipeline.load(given)
        message = str(refused.value)
        assert message.startswith(f"'{given}' holds no saved model (no manifest.json); did you mean '{job}/models'?")
        assert "a sweep job in models/ of its job folder" in message
    with pytest.raises(ModelFileError) as refused:
        ScoringPipeline.load(tmp_path / "elsewhere")
    assert "(no manifest.json); `dvc repro` saves it in models/ of the project" in str(refused.value)


def test_a_kept_frame_is_read_once_until_its_file_is_written_again(tmp_path: Path) -> None:
    """A sweep's jobs share the frames of the shared stages' outputs (`io.read_parquet_kept`), and their row
    group counts; a file written again (atomically: a new file) is read anew, and a missing one is the one-line
    error."""
    path = tmp_path / "train.parquet"
    io.write_parquet(path, pd.DataFrame({"x": [1.0, 2.0], TARGET: [0, 1]}))
    first = io.read_parquet_kept(path)
    assert io.read_parquet_kept(path) is first
    misses = io.row_groups.cache_info().misses
    assert io.row_groups(path) == io.row_groups(path) == 1
    assert io.row_groups.cache_info().misses == misses + 1  # its footer read once
    io.write_parquet(path, pd.DataFrame({"x": [3.0], TARGET: [1]}))
    again = io.read_parquet_kept(path)
    assert again is not first and again["x"].tolist() == [3.0]
    assert io.row_groups(path) == 1 and io.row_groups.cache_info().misses == misses + 2
    with pytest.raises(DataError, match="not found"):
        io.read_parquet_kept(tmp_path / "missing.parquet")


def test_reports_are_written_as_pandas_writes_them(tmp_path: Path) -> None:
    """`io.write_csv` formats frames of numbers and strings itself, for speed: the same bytes as pandas'
    `to_csv` (which dvc.lock's hashes of the reports were made with), and pandas' own writer for anything else."""
    rng = np.random.default_rng(3)
    awkward = ["plain", "with, comma", 'with "quotes"', "two\nlines", "", " spaced ", "ünïcode", "1e5"]
    floats = np.concatenate([rng.normal(scale=1e6, size=40), [np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, 1e-300, 5e-5]])
    frames = {
        "numbers and text": pd.DataFrame(
            {
                "x": floats,
                "n": np.arange(48) - 20,
                "flag": np.arange(48) % 3 == 0,
                "label": [awkward[i % len(awkward)] for i in range(48)],
                "tiny": rng.normal(size=48).astype(np.float32),
                "a, b": np.full(48, 2.0 / 3.0),
            }
        ),
        "numbers and plain text (rows joined)": pd.DataFrame(
            {"actual": ["late", "not late", ""] * 16, "p": floats, "n": np.arange(48)}
        ),
        "a header to quote": pd.DataFrame({"x": floats[:3], 'say "hi"': floats[3:6]}),
        "a carriage return": pd.DataFrame({"label": ["a\rb", "c"], "x": [1.0, 2.0]}),
        "one empty text column": pd.DataFrame({"label": ["", ""]}),
        "one text column": pd.DataFrame({"label": ["", "a"]}),
        "no rows": pd.DataFrame({"x": np.array([], dtype=float), "label": np.array([], dtype=object)}),
        "text with a missing value (pandas')": pd.DataFrame({"label": ["a", None], "x": [1.5, np.nan]}),
        "nullable integers (pandas')": pd.DataFrame({"n": pd.array([1, None], dtype="Int64")}),
        "rows of no column (pandas')": pd.DataFrame(index=range(3)),
        "dates (pandas')": pd.DataFrame({"day": pd.to_datetime(["2020-01-01", "2020-01-02"])}),
    }
    for name, frame in frames.items():
        cells = io._csv_cells(frame)
        assert (cells is None) == name.endswith("(pandas')"), name
        assert cells is None or cells.unquoted == (name not in ("numbers and text", "a carriage return")), name
        io.write_csv(tmp_path / "ours.csv", frame)
        frame.to_csv(tmp_path / "pandas.csv", index=False, float_format=io.FLOAT_FORMAT, lineterminator="\n")
        assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes(), name


def test_a_files_first_rows_are_read_once_per_version(tmp_path: Path) -> None:
    """`io.head` keeps what it read for the process (a sweep's jobs log the same rows): a file written again is
    read again, and a caller changing the frame it got does not change what the next caller gets."""
    path = tmp_path / "dataset.parquet"
    io.write_parquet(path, pd.DataFrame({"x": [1.0, 2.0, 3.0], TARGET: ["a", "b", "a"]}))
    first = io.head(path, 2)
    assert first["x"].tolist() == [1.0, 2.0]
    first.loc[0, "x"] = -1.0
    hits = io._head_of.cache_info().hits
    assert io.head(path, 2)["x"].tolist() == [1.0, 2.0]
    assert io._head_of.cache_info().hits == hits + 1  # not read again
    io.write_parquet(path, pd.DataFrame({"x": [7.0, 8.0, 9.0], TARGET: ["a", "b", "a"]}))
    assert io.head(path, 2)["x"].tolist() == [7.0, 8.0]
    with pytest.raises(DataError, match="not found"):
        io.head(tmp_path / "missing.parquet", 2)


def test_a_frame_written_is_read_back_in_this_process_without_reading_its_file(tmp_path: Path, monkeypatch) -> None:
    """`io.write_parquet` keeps a frame of numbers for this process's readers of its file (a hard link is the
    same file): what they get equals what the file gives, to the dtype of the column names, with the index a
    read makes; neither the writer nor a reader changing its frame changes the next reader's; a file written
    again, and a frame a read could give back otherwise (text, categories, nullable or object names), are read."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"], index=np.arange(100, 150))
    frame[TARGET] = rng.integers(0, 2, 50)
    frame["flag"], frame["small"] = frame["a"] > 0, frame[TARGET].astype(np.int8)
    path, linked = tmp_path / "train.parquet", tmp_path / "linked" / "train.parquet"
    io.write_parquet(path, frame)
    io.link_file(path, linked)
    from_file = pd.read_parquet(path)
    reads = []
    original = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda *args, **kwargs: reads.append(args) or original(*args, **kwargs))
    for file in (path, linked):
        kept = io.read_parquet(file)
        pd.testing.assert_frame_equal(kept, from_file, check_exact=True, check_index_type=True, check_column_type=True)
    assert reads == []
    frame.loc[100, "a"] = 99.0  # the writer's frame, after writing
    mine = io.read_parquet(path)
    mine.loc[0, "b"], mine["d"] = -99.0, 1.0  # a reader's frame
    pd.testing.assert_frame_equal(io.read_parquet(path), from_file, check_exact=True)
    io.write_parquet(path, frame.iloc[:5])
    assert io.read_parquet(path)["a"].iloc[0] == 99.0 and len(io.read_parquet(linked)) == 50
    assert reads == []
    others = {
        "text": pd.DataFrame({"x": [1.0, 2.0], TARGET: ["a", "b"]}),
        "category": pd.DataFrame({"x": pd.Categorical(["u", "v"]), TARGET: [0, 1]}),
        "nullable": pd.DataFrame({"x": pd.array([1, None], dtype="Int64"), TARGET: [0, 1]}),
        "object names": pd.DataFrame([[1.0, 0]], columns=pd.Index(["x", TARGET], dtype=object)),
    }
    for name, other in others.items():
        io.write_parquet(tmp_path / f"{name}.parquet", other)
        pd.testing.assert_frame_equal(
            io.read_parquet(tmp_path / f"{name}.parquet"), original(tmp_path / f"{name}.parquet")
        )
    assert len(reads) == len(others)


def test_figures_drawn_on_two_processes_are_those_drawn_on_one(tmp_path: Path) -> None:
    """`plots.save_all` under `drawn_on(2)` (the figure helper at an untracked sweep's end) draws every other
    figure in a forked copy: the same bytes as one process draws; a figure the copy failed to save is made here
    again, and an error here is raised here."""
    import os

    from logitlab import plots

    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [0.7, 0.5, 0.4], "val_loss": [0.72, 0.55, 0.45]})

    def figures(folder: Path) -> list:
        return [
            (
                lambda i=i: plots.loss_curve(history.assign(train_loss=history["train_loss"] * (1 + i / 10))),
                folder / f"{i}.png",
            )
            for i in range(5)
        ]

    plots.save_all(figures(tmp_path / "one"))
    with plots.drawn_on(2):
        plots.save_all(figures(tmp_path / "two"))
    for i in range(5):
        assert (tmp_path / "two" / f"{i}.png").read_bytes() == (tmp_path / "one" / f"{i}.png").read_bytes()
    drawers = tmp_path / "drawers.txt"

    def drawn_by_whom():  # each process appends its pid: a file, as the copy's memory is its own
        with drawers.open("a") as out:
            out.write(f"{os.getpid()}\n")
        return plots.loss_curve(history)

    plots.save_all([(drawn_by_whom, tmp_path / f"p{i}.png") for i in range(4)])
    assert set(drawers.read_text().split()) == {str(os.getpid())}
    drawers.unlink()
    with plots.drawn_on(2):
        plots.save_all([(drawn_by_whom, tmp_path / f"q{i}.png") for i in range(4)])
    pids = drawers.read_text().split()
    assert len(pids) == 4 and pids.count(str(os.getpid())) == 2 and len(set(pids)) == 2  # two each
    here = os.getpid()

    def fails_in_the_copy():
        if os.getpid() != here:
            raise RuntimeError("the copy failed")
        return plots.loss_curve(history)

    with plots.drawn_on(2):
        plots.save_all(
            [(lambda: plots.loss_curve(history), tmp_path / "a.png"), (fails_in_the_copy, tmp_path / "b.png")]
        )
    assert (
        (tmp_path / "b.png").read_bytes()
        == (tmp_path / "a.png").read_bytes()
        == (tmp_path / "one" / "0.png").read_bytes()
    )

    def fails():
        raise RuntimeError("no figure")

    with plots.drawn_on(2), pytest.raises(RuntimeError, match="no figure"):
        plots.save_all([(fails, tmp_path / "c.png"), (lambda: plots.loss_curve(history), tmp_path / "d.png")])
    assert (tmp_path / "d.png").read_bytes() == (tmp_path / "a.png").read_bytes() and not (tmp_path / "c.png").exists()


def test_the_train_stage_fits_a_small_split_on_one_blas_thread_and_a_large_one_on_the_process_s() -> None:
    """Whoever runs the stage (dvc repro, a sweep's job): the same thread count, so the same model bits."""
    from threadpoolctl import threadpool_info

    from logitlab.stages import train

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = blas_threads()
    small = pd.DataFrame(np.zeros((1000, 20)), columns=[f"x{i}" for i in range(20)])
    with train._blas_threads(small):
        assert blas_threads() == {1}
    assert blas_threads() == before
    rows = train.ONE_THREAD_BYTES // (8 * 20) + 1  # a split past the limit keeps the process's threads
    large = pd.DataFrame(np.broadcast_to(np.zeros(20), (rows, 20)), copy=False)
    with train._blas_threads(large):
        assert blas_threads() == before


def test_a_jobs_folds_fitted_on_two_threads_are_the_folds_fitted_one_after_another() -> None:
    """`train._fit_threads`: a small split's cross-validation runs on two threads (each fit on one BLAS thread);
    each fit depends on its fold, start and seed only, so the scores and curves are the sequential ones, bit
    for bit, here on a one-hot design whose Newton steps take the indicators' path (`_indicators.kept`)."""
    from concurrent.futures import ThreadPoolExecutor

    from logitlab.model import _indicators
    from logitlab.model._loss import single_threaded_blas
    from logitlab.stages import train

    rng = np.random.default_rng(0)
    n, levels = 4500, (20, 30, 25)
    one_hot = [np.eye(k)[rng.integers(0, k, n)] for k in levels]
    X = np.hstack([rng.normal(size=(n, 4)), *one_hot])
    y = (X[:, 0] + one_hot[0][:, :5].sum(axis=1) + rng.normal(size=n) > 0.5).astype(np.int64)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(**{TARGET: y})
    held_out = np.arange(n) % 3
    folds = [train.FoldArrays.of({"train": frame[held_out != k], "val": frame[held_out == k]}) for k in range(3)]
    assert all(_indicators.kept(fold.X) is not None for fold in folds)  # split into dense and one-hot blocks
    params = train.model_params({"solver": "newton", "C": 10.0, "tol": 1e-8}, 0)
    with single_threaded_blas():
        sequential = train.cross_validate(folds, params, 2)
        with ThreadPoolExecutor(2) as pool:
            threaded = train.cross_validate(folds, params, 2, pool=pool)
    assert threaded[0] == sequential[0]
    for history, expected in zip(threaded[1], sequential[1], strict=True):
        pd.testing.assert_frame_equal(history, expected, check_exact=True)
    small = frame.drop(columns=[TARGET])
    assert train._fit_threads(small, folds) == min(2, len(os.sched_getaffinity(0)))
    assert train._fit_threads(small, []) == 1  # no folds: the refit alone
