"""The five stage functions in one process, for sweeps: upstream results memoised by content hash.

A sweep over `model.*` ingests, preprocesses and feature-engineers once per distinct upstream config:
each upstream result lives in `<root>/.cache/logitlab/<stage>/<key>/`, where the key hashes the stage's
params, its input's key and the stage's source code. An entry is computed under a file lock by one worker
(the others wait, then reuse it) and published by an atomic directory rename, so no reader sees half of one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from logitlab import config, io, sources
from logitlab.scoring import ScoringPipeline
from logitlab.stages import evaluate, feature_engineer, ingest, preprocess, train
from logitlab.transforms import PolynomialExpander, Preprocessor

log = logging.getLogger(__name__)

SPLITS = preprocess.SPLITS


@dataclass
class JobResult:
    metrics: dict[str, Any]
    pipeline: ScoringPipeline
    history: pd.DataFrame
    out_dir: Path  # holds model/ and reports/
    raw_example: pd.DataFrame
    data_hash: str
    cache: dict[str, str]


@dataclass(frozen=True)
class Config:
    """A whole validated config, as the sweep and tests use it."""

    data: config.DataConfig
    preprocess: config.PreprocessConfig
    features: config.FeaturesConfig
    model: dict[str, Any]
    mlflow: config.MlflowConfig
    sweep: config.SweepConfig
    seed: int

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Config:
        seed = config.seed_value(config.section(params, "seed"))
        return cls(
            data=config.data_config(config.section(params, "data")),
            preprocess=config.preprocess_config(config.section(params, "preprocess")),
            features=config.features_config(config.section(params, "features")),
            model=config.model_params(config.section(params, "model"), seed),
            mlflow=config.mlflow_config(config.section(params, "mlflow")),
            sweep=config.sweep_config(config.section(params, "sweep")),
            seed=seed,
        )


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@functools.cache
def _code_hash(*modules: Any) -> str:
    """Hashed once per process: the code a process runs is the code it imported."""
    return _digest(*(hashlib.sha256(Path(m.__file__).read_bytes()).hexdigest() for m in modules))


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Memo:
    """A content-addressed cache of stage results under `<root>/.cache/logitlab`."""

    def __init__(self, root: Path) -> None:
        self.base = root / ".cache" / "logitlab"
        self.status: dict[str, str] = {}  # stage -> "hit" | "miss", for the run's tags and logs

    def entry(self, stage: str, key: str) -> Path:
        return self.base / stage / key

    def get_or_compute(self, stage: str, key: str, compute: Callable[[Path], None]) -> Path:
        """The entry's directory; on a miss, `compute(tmp_dir)` writes it and it is renamed into place."""
        final = self.entry(stage, key)
        self.status[stage] = "hit"
        if final.is_dir():
            return final
        locks = self.base / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        # Parallel workers wanting the same entry: one computes, the others wait and then reuse it.
        with FileLock(locks / f"{stage}-{key}.lock", timeout=3600):
            if final.is_dir():
                return final
            self.status[stage] = "miss"
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
            try:
                compute(tmp)
                os.rename(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def _write_stage(tmp: Path, splits: dict[str, pd.DataFrame], state_file: str, state: Any, report: Any) -> None:
    for name, frame in splits.items():
        io.write_parquet(tmp / f"{name}.parquet", frame)
    io.write_json(tmp / state_file, state)
    io.write_json(tmp / "report.json", report)


def _ingest(cfg: Config, root: Path, memo: Memo) -> tuple[str, Path]:
    source_hash = ""
    if isinstance(cfg.data, config.CsvData):
        csv = sources.resolve_input(cfg.data.path, root)
        source_hash = _file_hash(csv) if csv.is_file() else "missing"
    key = _digest("ingest", asdict(cfg.data), source_hash, _code_hash(ingest, sources))

    def compute(tmp: Path) -> None:
        frame, schema = ingest.run(cfg.data, root)
        io.write_parquet(tmp / ingest.RAW.name, frame)
        io.write_json(tmp / ingest.SCHEMA.name, schema)

    return key, memo.get_or_compute("ingest", key, compute)


def _preprocess(cfg: Config, parent_key: str, parent: Path, memo: Memo) -> tuple[str, Path]:
    key = _digest("preprocess", parent_key, asdict(cfg.preprocess), cfg.seed, _code_hash(preprocess))

    def compute(tmp: Path) -> None:
        splits, pre, report = preprocess.run(io.read_parquet(parent / ingest.RAW.name), cfg.preprocess, cfg.seed)
        _write_stage(tmp, splits, preprocess.STATE.name, pre.to_dict(), report)

    return key, memo.get_or_compute("preprocess", key, compute)


def _features(cfg: Config, parent_key: str, parent: Path, memo: Memo) -> tuple[str, Path]:
    key = _digest("features", parent_key, asdict(cfg.features), _code_hash(feature_engineer))

    def compute(tmp: Path) -> None:
        splits = {name: io.read_parquet(parent / f"{name}.parquet") for name in SPLITS}
        out, expander, report = feature_engineer.run(splits, cfg.features)
        _write_stage(tmp, out, feature_engineer.STATE.name, expander.to_dict(), report)

    return key, memo.get_or_compute("features", key, compute)


def run_job(cfg: Config, out_dir: Path, root: Path | None = None) -> JobResult:
    """ingest -> preprocess -> feature-engineer (memoised) -> train -> evaluate, reports under `out_dir`."""
    root = root or config.project_root()
    memo = Memo(root)
    raw_key, raw_dir = _ingest(cfg, root, memo)
    pre_key, pre_dir = _preprocess(cfg, raw_key, raw_dir, memo)
    _, feat_dir = _features(cfg, pre_key, pre_dir, memo)
    status = memo.status
    log.info("upstream cache: %s", ", ".join(f"{k}={v}" for k, v in status.items()))

    splits = {name: io.read_parquet(feat_dir / f"{name}.parquet") for name in SPLITS}
    model = train.run(splits["train"], splits["val"], cfg.model)
    pipeline = ScoringPipeline(
        Preprocessor.from_dict(io.read_json(pre_dir / preprocess.STATE.name)),
        PolynomialExpander.from_dict(io.read_json(feat_dir / feature_engineer.STATE.name)),
        model,
        io.read_json(raw_dir / ingest.SCHEMA.name)["labels"],
    )
    pipeline.save(out_dir / "model")
    history = train.cost_history(model)
    reports_dir = out_dir / "reports"
    io.write_csv(reports_dir / train.COST_HISTORY.name, history)
    interim_test = io.read_parquet(pre_dir / "test.parquet")
    metrics = evaluate.write_reports(reports_dir, pipeline, splits, interim_test, history)
    hashed = data_hash({name: [frame] for name, frame in splits.items()})
    return JobResult(metrics, pipeline, history, out_dir, _raw_example(raw_dir).copy(), hashed, status)


@functools.cache
def _raw_example(raw_dir: Path) -> pd.DataFrame:
    """Five raw rows for the logged model's input example, read once per memo entry and process (entries never
    change once published)."""
    return io.read_parquet(raw_dir / ingest.RAW.name).drop(columns=[sources.TARGET]).head(5)


def data_hash(splits: Mapping[str, Iterable[pd.DataFrame]]) -> str:
    """A short content hash of the model's input tables (tagged on runs to tell data versions apart).

    Each split is a sequence of row chunks (one frame in memory, or a streamed file's row groups); row hashes
    concatenate, so the digest does not depend on how the rows were chunked."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(name.encode())
        for frame in splits[name]:
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]
