"""The DVC executor: `python -m logitlab.stages.<stage>` runs one stage declaration in the project.

DVC has already decided the stage is stale; this reads only the stage's own sections of params.yaml, finds
its inputs and writes its outputs at their declared paths (DVC runs stages from the project root), runs its
finishing work, and, for the stage that completes a run, records the run in MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from logitlab import config
from logitlab.cli import run_guarded, setup_logging
from logitlab.stage import Stage


def main(stage: Stage[Any]) -> None:
    setup_logging()
    run_guarded(lambda: execute(stage))


def execute(stage: Stage[Any], params_file: str = "params.yaml") -> None:
    params = config.load_params(params_file)
    cfg = stage.settings(config.sections(params, stage.params))
    files = stage.resolve({path: path for path in stage.inputs.values()}, Path())
    stage.run(cfg, files)
    if stage.finish is not None:
        stage.finish(files)
    if stage.record is not None:
        tracking = config.mlflow_config(config.section(params, "mlflow"))
        if tracking.enabled:  # mlflow is imported only when tracking is on
            from logitlab.tracking import repro

            repro.log_repro(params, tracking, stage.record(files))
