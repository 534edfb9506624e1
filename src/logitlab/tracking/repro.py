"""A `dvc repro` (or `dvc exp run`) that reached the evaluate stage becomes one MLflow run."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from logitlab import config
from logitlab.tracking.lifecycle import git_tags, tracked_run
from logitlab.tracking.results import RunRecord, log_results
from logitlab.tracking.store import connect

log = logging.getLogger(__name__)


def log_repro(params: Mapping[str, Any], cfg: config.MlflowConfig, record: RunRecord) -> None:
    tracker = connect(cfg)
    if tracker is None:
        return
    tags = {**git_tags(), **dvc_stage_tags(Path("dvc.lock")), "logitlab.entry": "dvc repro"}
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp_name"] = exp
    name = os.environ.get("DVC_EXP_NAME") or "dvc-repro"
    with tracked_run(tracker, name, tags, params) as run_id:
        log_results(run_id, record, cfg.history_points, log_model=cfg.log_model)
        log.info("tracked as MLflow run %s in experiment '%s' (%s)", run_id, tracker.experiment_name, tracker.uri)


def dvc_stage_tags(lock_file: Path) -> dict[str, str]:
    """A short hash of each stage's outputs as recorded in dvc.lock (the stages that already ran)."""
    import yaml

    if not lock_file.is_file():
        return {}
    lock = yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}
    tags = {}
    for stage, entry in (lock.get("stages") or {}).items():
        digests = sorted(out.get("md5", "") for out in entry.get("outs", []))
        tags[f"dvc.stage.{stage}"] = hashlib.sha256("".join(digests).encode()).hexdigest()[:16]
    return tags
