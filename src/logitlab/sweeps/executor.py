"""The sweep executor: every stage of `pipeline.STAGES` for one job's config, in process (`run_job`).

A shared stage's outputs live in a content-addressed cache, `<root>/.cache/logitlab/<stage>/<key>/`, where the
key hashes the stage's validated params, its inputs' keys, the content of every source file `dvc.yaml` lists
for it and of any file its params name (a user's CSV); the other stages write into the job's directory. Each
stage function streams when its input is streamed, so a sweep job streams exactly as `dvc repro` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from filelock import FileLock

from logitlab import config, io
from logitlab.pipeline import STAGES, settings
from logitlab.stage import Files, Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobConfig:
    """One job's config, validated once (each stage's sections by the stage's own `settings`, so a bad value
    anywhere fails before any stage runs; and the sweep section) and passed down: what the job runs, records
    and is ranked by."""

    params: Mapping[str, Any]  # as composed: what the job's run records
    stages: Mapping[str, Any]  # each stage's validated settings, by stage name
    sweep: config.SweepConfig

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> JobConfig:
        return cls(params, settings(params), config.sweep_config(config.section(params, "sweep")))

    @property
    def mlflow(self) -> config.MlflowConfig:
        """The mlflow section, as the stage that records a run (evaluate) validated it."""
        return cast(config.MlflowConfig, self.stages["evaluate"])

    @property
    def preprocess(self) -> config.PreprocessConfig:
        return cast(config.PreprocessConfig, self.stages["preprocess"].preprocess)


# ------------------------------------------------------------------------------------------ cache keys
def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


_content_hashes: dict[tuple[str, int, int], str] = {}


def content_hash(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for the process: a sweep's jobs hash a big CSV once."""
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _content_hashes:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _content_hashes[key] = digest.hexdigest()
    return _content_hashes[key]


def _source_files(declared: str, root: Path) -> Iterator[Path]:
    """A source path as dvc.yaml lists it, in the project; where the project has no `src/` (an installed
    package), the same path in the package logitlab was imported from."""
    path = root / declared
    if not path.exists():
        path = Path(__file__).parents[1].joinpath(*Path(declared).parts[2:])
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    else:
        yield path


def cache_key(stage: Stage[Any], cfg: Any, upstream: Sequence[str], root: Path) -> str:
    """What a shared stage's outputs are a function of: validated params, inputs' keys, source and named files."""
    values = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type) else cfg
    sources = {
        str(file.relative_to(root) if file.is_relative_to(root) else file): content_hash(file)
        for declared in stage.sources
        for file in _source_files(declared, root)
    }
    named = [content_hash(path) for path in stage.named_files(cfg)] if stage.named_files else []
    return _digest(stage.name, values, list(upstream), sources, named)


# ----------------------------------------------------------------------------------------------- memo
class Memo:
    """A content-addressed cache of stage results under `<root>/.cache/logitlab`."""

    def __init__(self, root: Path) -> None:
        self.base = root / ".cache" / "logitlab"
        self.status: dict[str, str] = {}  # stage -> "hit" | "miss", for the run's tags and logs

    def entry(self, stage: str, key: str) -> Path:
        return self.base / stage / key

    def get_or_compute(self, stage: str, key: str, compute: Callable[[Path], None]) -> Path:
        """The entry's directory; on a miss, `compute(tmp_dir)` writes it and it is renamed into place.

        Parallel workers wanting the same entry: one computes under a file lock, the others wait and reuse it;
        the atomic rename means no reader ever sees half an entry."""
        final = self.entry(stage, key)
        self.status[stage] = "hit"
        if final.is_dir():
            return final
        locks = self.base / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(locks / f"{stage}-{key}.lock", timeout=3600):
            if final.is_dir():
                return final
            self.status[stage] = "miss"
            # made in a temporary folder renamed into place; one a killed process left (a terminated
            # warm-up, a SIGKILL) is removed here, as `io.atomic_path` removes a killed writer's file
            with io.replaced_folder(final) as tmp:
                compute(tmp)
        return final


# ---------------------------------------------------------------------------------------- one sweep job
@dataclass
class JobResult:
    metrics: dict[str, Any]  # what the last stage returned
    files: dict[str, Files]  # where each stage read and wrote, by stage name
    cache: dict[str, str]  # shared stage -> "hit" | "miss"
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # wall time of each stage run in the job


def run_now(stage: Stage, files: Files) -> None:
    assert stage.finish is not None
    stage.finish(files)


def run_job(
    job_config: JobConfig,
    job_dir: Path,
    root: Path | None = None,
    finish: Callable[[Stage, Files], None] = run_now,
    shared_only: bool = False,
) -> JobResult:
    """Every stage of `STAGES` for one config: shared stages through the memo, the others into `job_dir`
    (the layout `dvc repro` leaves in the project: `models/`, `reports/`). `finish` runs each stage's
    finishing work (figures); a sweep may hand it to another process. `shared_only`: the shared stages alone
    (`warm_shared`)."""
    root = root or config.project_root()
    validated = job_config.stages
    memo = Memo(root)
    located: dict[Path, Path] = {}  # declared path -> where this job's copy is
    keys: dict[Path, str] = {}  # declared output path -> cache key of the entry holding it
    files: dict[str, Files] = {}
    result: Any = None
    seconds: dict[str, float] = {}
    for stage in STAGES:
        if shared_only and not stage.shared:
            break
        cfg = validated[stage.name]
        inputs = {path: located.get(path, root / path) for path in stage.inputs.values()}
        if stage.shared:
            key = cache_key(stage, cfg, [keys[path] for path in stage.inputs.values() if path in keys], root)
            entry = memo.get_or_compute(stage.name, key, lambda tmp: stage.run(cfg, stage.resolve(inputs, tmp)))  # noqa: B023
            files[stage.name] = stage.resolve(inputs, entry)
            keys.update({out.path: key for out in stage.outputs.values()})
        else:
            files[stage.name] = stage.resolve(inputs, job_dir)
            start = time.perf_counter()
            result = stage.run(cfg, files[stage.name])
            seconds[stage.name] = time.perf_counter() - start
            if stage.finish is not None:
                finish(stage, files[stage.name])
        located.update({out.path: files[stage.name].outputs[name] for name, out in stage.outputs.items()})
    log.info("upstream cache: %s", ", ".join(f"{k}={v}" for k, v in memo.status.items()))
    return JobResult(result, files, dict(memo.status), seconds)


def warm_shared(params: Mapping[str, Any], root: Path | None = None) -> None:
    """The shared stages of a job with `params`, computed into the cache: the figure helper runs them for a
    tracked sweep's first job while the sweep process imports MLflow and opens the store (~2.6 s), so that
    the job finds them made (or waits on the entry's lock while they are). A failure is the job's to report:
    here it is dropped."""
    with contextlib.suppress(Exception):
        run_job(JobConfig.of(params), Path(os.devnull), root, shared_only=True)


def finish_outputs(job: JobResult) -> list[Path]:
    """Where the job's finishing work writes (the figures)."""
    return [path for stage in STAGES if stage.name in job.files for path in stage.finished(job.files[stage.name])]


def record(job: JobResult) -> Any:
    """The run record of a finished job (`RunRecord`), from the stage that declares one."""
    stage = next(stage for stage in STAGES if stage.record is not None)
    assert stage.record is not None
    return stage.record(job.files[stage.name])
