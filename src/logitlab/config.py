"""The config schema and where config comes from.

`conf/` (Hydra) is the source of truth; `params.yaml` is that tree composed, which DVC stages read and DVC
recomposes on `dvc exp run -S`. Both paths go through `validate`, so a typo'd key or an out-of-range value
is refused the same way wherever it comes from, with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from logitlab.errors import ConfigError

SECTIONS = ("data", "preprocess", "features", "model", "mlflow", "sweep", "seed")


def project_root() -> Path:
    """The repository root: DVC_ROOT when DVC runs us (it points queued experiments at the parent
    repository, so every worker tracks into the same store), else the nearest parent with a dvc.yaml."""
    if env_root := os.environ.get("LOGITLAB_ROOT") or os.environ.get("DVC_ROOT"):
        return Path(env_root).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file() and (candidate / "conf").is_dir():
            return candidate
    return here


def inside_project(key: str, path: str | os.PathLike[str]) -> Path:
    """`path` resolved (relative to the working directory, as Hydra does); refused outside the project root."""
    root = project_root()
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_relative_to(root):
        raise ConfigError(
            f"config key '{key}': '{path}' resolves to {resolved}, outside the project {root}; "
            "logitlab writes only inside the project"
        )
    return resolved


# --------------------------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class MakeClassificationData:
    name: str
    source: str
    n_samples: int = 1000
    n_features: int = 2
    n_informative: int = 2
    n_redundant: int = 0
    n_clusters_per_class: int = 1
    class_sep: float = 1.0
    flip_y: float = 0.01
    random_state: int = 42


@dataclass(frozen=True)
class MoonsData:
    name: str
    source: str
    n_samples: int = 1000
    noise: float = 0.2
    random_state: int = 42


@dataclass(frozen=True)
class CirclesData:
    name: str
    source: str
    n_samples: int = 1000
    noise: float = 0.1
    factor: float = 0.5
    random_state: int = 42


@dataclass(frozen=True)
class BreastCancerData:
    name: str
    source: str


@dataclass(frozen=True)
class CsvData:
    name: str
    source: str
    path: str
    target: str | int
    header: bool = True
    positive_label: Any = None
    negative_label: Any = None
    na_values: list[str] = field(default_factory=list)
    drop: list[str | int] = field(default_factory=list)
    sep: str = ","
    chunk_rows: int | None = None  # rows per chunk: stream the CSV and every stage after it (None: in memory)
    encoding: str = "utf-8"  # of the CSV's text; utf-8 also reads a file that starts with a byte-order mark


DATA_SOURCES: dict[str, type] = {
    "make_classification": MakeClassificationData,
    "moons": MoonsData,
    "circles": CirclesData,
    "breast_cancer": BreastCancerData,
    "csv": CsvData,
}

DataConfig = MakeClassificationData | MoonsData | CirclesData | BreastCancerData | CsvData


@dataclass(frozen=True)
class PreprocessConfig:
    test_size: float = 0.2
    val_size: float = 0.2
    scaler: str = "standard"
    numeric_impute: str = "median"
    max_categories: int = 50
    cv_folds: int | None = None  # k: also score k stratified folds of train+val; the model is refit on both


@dataclass(frozen=True)
class FeaturesConfig:
    degree: int = 1
    interaction_only: bool = False
    include: list[str] | None = None
    max_features: int = 20000


@dataclass(frozen=True)
class MlflowConfig:
    enabled: bool = True
    tracking_uri: str | None = None
    experiment_name: str = "logitlab"
    required: bool = True
    log_model: bool = True
    register: bool = True
    registered_model_name: str = "logitlab"
    history_points: int = 500
    child_artifacts: str = "best"  # which children of a sweep get figures and the pyfunc model: best | all


CHILD_ARTIFACTS = ("best", "all")


@dataclass(frozen=True)
class _SweepKeys:
    """The sweep section as written: `metric` and `direction` a name or a list of names (several objectives)."""

    metric: str | list[str] = "val_accuracy"
    direction: str | list[str] = "maximize"
    resume: str | None = None  # a crashed sweep's parent run id, or "last": run only its jobs not yet FINISHED
    champion: str = "first"  # which job of several objectives is the sweep's best: first | balanced


@dataclass(frozen=True)
class SweepConfig:
    """The sweep section validated: one direction per objective; `metric`/`direction` are the first objective's,
    so code that ranks by one objective reads them as before."""

    metrics: tuple[str, ...] = ("val_accuracy",)
    directions: tuple[str, ...] = ("maximize",)
    resume: str | None = None
    champion: str = "first"

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def direction(self) -> str:
        return self.directions[0]

    @property
    def several(self) -> bool:
        """Several objectives: a Pareto front, and the champion by `champion`."""
        return len(self.metrics) > 1


RESUME_KEY = "sweep.resume"
# `first`: best by the first objective, ties to the next ones in order; `balanced`: the Pareto front's point
# nearest the utopia point, each objective min-max normalised over the front (`tracking.selection`).
CHAMPION_RULES = ("first", "balanced")
DIRECTIONS = ("maximize", "minimize")
# The metrics `evaluate` returns (`reports` computes them): the names `sweep.metric` may take, here so that a
# sweep refuses a misspelt one before it starts, importing nothing of the maths.
BINARY_ONLY = tuple(f"test_{name}" for name in ("precision", "recall", "f1", "tn", "fp", "fn", "tp"))
CV_SCORES = ("accuracy", "log_loss", "roc_auc")  # scored on each held-out fold; cv_<score>_mean / _std
CV_METRICS = tuple(f"cv_{score}_{stat}" for score in CV_SCORES for stat in ("mean", "std"))
# BINARY_ONLY with two classes, CV_METRICS with preprocess.cv_folds, the val_* ones without it.
METRICS = (
    *(f"{split}_{name}" for split in ("train", "val", "test") for name in ("accuracy", "log_loss")),
    "val_roc_auc",
    "test_roc_auc",
    "test_f1_macro",
    "test_f1_weighted",
    *BINARY_ONLY,
    *CV_METRICS,
    "n_iter",
    "converged",
    "final_train_loss",
    "n_nonzero_coef",
)
# A sweep job's run only, not `metrics.json`: the train stage's wall time is not deterministic (it would dirty
# dvc.lock), but it is an objective a sweep may minimise.
JOB_METRICS = ("fit_time_s",)
RUN_ID = re.compile(r"[0-9a-f]{32}")


# -------------------------------------------------------------------------------------------- checks
def _fail(key: str, expected: str, got: Any) -> ConfigError:
    return ConfigError(f"config key '{key}': expected {expected}, got {got!r}")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check one value against a dataclass field's type; ints are accepted where floats are expected."""
    kinds = [a.strip() for a in str(annotation).split("|")]
    if value is None:
        if "None" in kinds or "Any" in kinds:
            return None
        raise _fail(key, f"a value of type {annotation}", value)
    for kind in kinds:
        if kind == "Any":
            return value
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind == "str" and isinstance(value, str):
            return value
        if kind.startswith("list") and isinstance(value, list | tuple):
            return list(value)
    raise _fail(key, f"a value of type {annotation}", value)


def _build(section: str, schema: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise _fail(section, "a mapping of keys", raw)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"config key '{section}.{unknown[0]}' is unknown; {section} takes: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, spec in fields.items():
        key = f"{section}.{name}"
        if name not in raw:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ConfigError(f"config key '{key}' is missing; set it, e.g. {key}=...")
            continue
        if raw[name] == "???":
            raise ConfigError(f"config key '{key}' is missing; set it, e.g. {key}=...")
        values[name] = _coerce(key, raw[name], spec.type)
    return schema(**values)


def _check_range(key: str, ok: bool, expected: str, got: Any) -> None:
    if not ok:
        raise _fail(key, expected, got)


def data_config(raw: Any) -> DataConfig:
    if not isinstance(raw, dict) or "source" not in raw:
        raise ConfigError("config key 'data.source' is missing; pick a data set, e.g. data=synthetic")
    source = raw["source"]
    if source not in DATA_SOURCES:
        raise _fail("data.source", f"one of {', '.join(DATA_SOURCES)}", source)
    cfg = _build("data", DATA_SOURCES[source], raw)
    if hasattr(cfg, "n_samples"):
        _check_range("data.n_samples", cfg.n_samples >= 10, "an integer >= 10", cfg.n_samples)
    if isinstance(cfg, CsvData) and cfg.positive_label is not None and cfg.negative_label is not None:
        raise ConfigError("config keys 'data.positive_label' and 'data.negative_label': set one, not both")
    if isinstance(cfg, CsvData) and cfg.chunk_rows is not None:
        _check_range("data.chunk_rows", cfg.chunk_rows >= 100, "null or an integer >= 100", cfg.chunk_rows)
    if isinstance(cfg, CsvData):
        _check_range("data.encoding", _is_text_encoding(cfg.encoding), "a text encoding such as latin-1", cfg.encoding)
    return cfg


def _is_text_encoding(name: str) -> bool:
    try:
        "".encode(name)  # refuses unknown names and codecs that are not text encodings (base64, rot13)
    except LookupError:
        return False
    return True


def preprocess_config(raw: Any) -> PreprocessConfig:
    cfg = _build("preprocess", PreprocessConfig, raw)
    _check_range("preprocess.test_size", 0 < cfg.test_size < 1, "a fraction in (0, 1)", cfg.test_size)
    _check_range("preprocess.val_size", 0 < cfg.val_size < 1, "a fraction in (0, 1)", cfg.val_size)
    _check_range(
        "preprocess.val_size",
        cfg.test_size + cfg.val_size < 1,
        f"test_size + val_size < 1 (test_size is {cfg.test_size})",
        cfg.val_size,
    )
    _check_range("preprocess.scaler", cfg.scaler in ("standard", "minmax", "none"), "standard|minmax|none", cfg.scaler)
    _check_range(
        "preprocess.numeric_impute", cfg.numeric_impute in ("median", "mean"), "median|mean", cfg.numeric_impute
    )
    _check_range("preprocess.max_categories", cfg.max_categories >= 2, "an integer >= 2", cfg.max_categories)
    if cfg.cv_folds is not None:
        _check_range("preprocess.cv_folds", cfg.cv_folds >= 2, "null or an integer >= 2", cfg.cv_folds)
    return cfg


def features_config(raw: Any) -> FeaturesConfig:
    cfg = _build("features", FeaturesConfig, raw)
    _check_range("features.degree", 1 <= cfg.degree <= 10, "an integer from 1 to 10", cfg.degree)
    _check_range("features.max_features", cfg.max_features >= 1, "an integer >= 1", cfg.max_features)
    return cfg


def mlflow_config(raw: Any) -> MlflowConfig:
    cfg = _build("mlflow", MlflowConfig, raw)
    _check_range("mlflow.history_points", cfg.history_points >= 0, "an integer >= 0", cfg.history_points)
    _check_range(
        "mlflow.child_artifacts", cfg.child_artifacts in CHILD_ARTIFACTS, "|".join(CHILD_ARTIFACTS), cfg.child_artifacts
    )
    _check_range(
        "mlflow.registered_model_name",
        bool(cfg.registered_model_name.strip()) and "/" not in cfg.registered_model_name,
        "a non-empty name without '/'",
        cfg.registered_model_name,
    )
    return cfg


def sweep_config(raw: Any) -> SweepConfig:
    keys = _build("sweep", _SweepKeys, raw)
    metrics = _names("sweep.metric", keys.metric)
    directions = _names("sweep.direction", keys.direction)
    known = (*METRICS, *JOB_METRICS)
    for metric in metrics:
        if metric not in known:
            raise ConfigError(
                f"config key 'sweep.metric': '{metric}' is not a metric; choose one of {', '.join(known)}"
            )
    if len(set(metrics)) < len(metrics):
        twice = next(metric for metric in metrics if metrics.count(metric) > 1)
        raise ConfigError(f"config key 'sweep.metric': expected each metric once, got '{twice}' twice")
    for direction in directions:
        _check_range("sweep.direction", direction in DIRECTIONS, "maximize|minimize", direction)
    _check_range(
        "sweep.direction",
        len(directions) == len(metrics),
        f"one direction per metric ({len(metrics)}: {', '.join(metrics)})",
        list(directions) if len(directions) > 1 else directions[0],
    )
    _check_range("sweep.champion", keys.champion in CHAMPION_RULES, "|".join(CHAMPION_RULES), keys.champion)
    if keys.resume is not None:
        ok = keys.resume == "last" or RUN_ID.fullmatch(keys.resume) is not None
        _check_range(RESUME_KEY, ok, "a sweep's parent run id (32 hex digits) or 'last'", keys.resume)
    return SweepConfig(metrics, directions, keys.resume, keys.champion)


def _names(key: str, value: str | list[Any]) -> tuple[str, ...]:
    """A name, or a non-empty list of names (a list of one is the single case)."""
    names = (value,) if isinstance(value, str) else tuple(value)
    _check_range(key, bool(names) and all(isinstance(n, str) for n in names), "a name or a list of names", value)
    return names


def without_resume(overrides: Iterable[str]) -> list[str]:
    """A sweep's overrides as they identify its jobs: `sweep.resume` says where to go on, not what to run."""
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0] != RESUME_KEY]


def seed_value(raw: Any) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise _fail("seed", "a non-negative integer", raw)
    return raw


# ------------------------------------------------------------------------------------------- sources
def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read params.yaml (as DVC wrote it) into a plain dict; unknown top-level sections are refused."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"params file '{file}' not found; run `make params` to compose it from conf/")
    try:
        params = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"params file '{file}' is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"params file '{file}': expected a mapping of sections")
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"config key '{unknown[0]}' is unknown; the sections are: {', '.join(SECTIONS)}")
    return params


def section(params: Mapping[str, Any], name: str) -> Any:
    if name not in params:
        raise ConfigError(f"config section '{name}' is missing from params.yaml; run `make params`")
    return params[name]


def sections(params: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The named sections of a params tree: what one stage reads."""
    return {name: section(params, name) for name in names}


def compose(overrides: list[str] | None = None, config_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Compose conf/ with Hydra's compose API, resolved to plain data, as DVC does for params.yaml."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf = Path(config_dir) if config_dir else project_root() / "conf"
    try:
        with initialize_config_dir(str(conf.resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(str(err))) from None
    return cast(dict[str, Any], resolved)


def write_params(path: str | os.PathLike[str], overrides: list[str] | None = None) -> None:
    """Write params.yaml exactly as `dvc exp run` does (DVC's own compose_and_dump), atomically."""
    from dvc.utils.hydra import compose_and_dump

    from logitlab.io import atomic_path

    root = project_root()
    with atomic_path(path) as tmp:
        compose_and_dump(tmp, str(root / "conf"), None, "config", str(root / "hydra_plugins"), list(overrides or []))


def one_line(message: str) -> str:
    return " ".join(message.split())
