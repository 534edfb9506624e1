"""`python -m logitlab.sweep [-m] key=value ...`: the pipeline as a Hydra app over conf/.

Each job runs the five stage functions in process (upstream results memoised) inside an MLflow child run
of the sweep's parent. A failed job is recorded FAILED and reported to the sweeper as NaN, so one bad
learning rate does not end the sweep; a single run (no -m) with bad input ends with one line and exit 2.
"""

from __future__ import annotations

import json
import logging
import math
import os
import traceback
from pathlib import Path
from typing import Any, cast

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from logitlab import callbacks, config, reports
from logitlab.cli import debug, exit_interrupted, fail
from logitlab.errors import LogitlabError
from logitlab.pipeline import Config, JobResult, run_job

log = logging.getLogger("logitlab.sweep")


def job(cfg: DictConfig) -> float:
    """One job: the sweep metric on success, NaN when the job failed (its run says why)."""
    params = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    try:
        return _job(params)
    except LogitlabError as err:
        if not callbacks.is_multirun():
            if debug():
                raise
            fail(str(err))  # exits here: Hydra would add its own "Error executing job" line
        log.error("job %s failed: %s", HydraConfig.get().job.num, err)
    except Exception:
        if not callbacks.is_multirun():
            raise
        log.exception("job %s failed", HydraConfig.get().job.num)
    return math.nan


def _job(params: dict[str, Any]) -> float:
    cfg = Config.from_params(params)
    if cfg.sweep.metric not in reports.METRICS:
        raise LogitlabError(
            f"sweep.metric: '{cfg.sweep.metric}' is not a metric; choose one of {', '.join(reports.METRICS)}"
        )
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    tracker = None
    if cfg.mlflow.enabled:  # tracking (and mlflow) only imported when on
        from logitlab import tracking

        tracker = tracking.connect(cfg.mlflow)
    if tracker is None:
        return _report(cfg, run_job(cfg, out_dir))

    def tracked(run_id: str) -> JobResult:
        result = run_job(cfg, out_dir)
        tracking.log_results(
            run_id,
            result.metrics,
            result.history,
            out_dir / "reports",
            out_dir / "model" if cfg.mlflow.log_model else None,
            result.raw_example,
            cfg.mlflow.history_points,
            tags={"data_hash": result.data_hash, "upstream_cache": json.dumps(result.cache, sort_keys=True)},
        )
        return result

    return _report(cfg, tracking.job_run(tracker, params, tracked))


def _report(cfg: Config, result: JobResult) -> float:
    log.info("%s", reports.summary(result.metrics))
    return float(result.metrics[cfg.sweep.metric])


def _raised_by_hydra(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and f"{os.sep}hydra{os.sep}" in frames[-1].filename


def hydra_message(err: Exception) -> str:
    """Hydra's multi-line messages as one line, without OmegaConf's full_key/object_type trailer."""
    lines = [str(err), str(err.__cause__ or "")]
    kept = [line.strip() for text in lines for line in text.splitlines() if line.strip()]
    kept = [line for line in kept if not line.startswith(("full_key:", "object_type=", "reference_type="))]
    return " ".join(dict.fromkeys(kept)).split(" Config search path:")[0]


app = hydra.main(version_base=None, config_path=str(config.project_root() / "conf"), config_name="config")(job)


def main() -> None:
    # Let Hydra's own errors (bad override, unknown group option) reach us, to be told in one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        app()
    except (LogitlabError, HydraException, OmegaConfBaseException) as err:
        if debug():
            raise
        fail(hydra_message(err))
    except ValueError as err:  # Hydra's own command-line checks (e.g. --cfg with -m)
        if debug() or not _raised_by_hydra(err):
            raise
        fail(str(err))
    except KeyboardInterrupt:
        callbacks.end_open_sweep("KILLED", "interrupted")
        if debug():
            raise
        exit_interrupted()
    finally:
        callbacks.end_open_sweep("FAILED", "ended by an error outside the jobs")


if __name__ == "__main__":
    main()
