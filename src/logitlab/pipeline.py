"""The pipeline: the five stage declarations in order, and `dvc.yaml` generated from them.

DVC runs the stages as files on disk (`dvc.yaml`, written by `make pipeline` from `STAGES`); a sweep job runs
the same declarations in process (`logitlab.sweeps.executor`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from logitlab import config
from logitlab.stage import Stage
from logitlab.stages import evaluate, feature_engineer, ingest, preprocess, train

STAGES: tuple[Stage[Any], ...] = (
    ingest.STAGE,
    preprocess.STAGE,
    feature_engineer.STAGE,
    train.STAGE,
    evaluate.STAGE,
)

# `dvc plots show`: the curve data the stages write, and two of the figures.
# Every file exists after a run: the decision boundary is a placeholder saying why where it cannot be drawn.
PLOTS: list[Any] = [
    {
        "Loss per epoch": {
            "template": "linear",
            "x": "epoch",
            "y": {str(train.STAGE.output("cost_history")): ["train_loss", "val_loss"]},
            "x_label": "epoch",
            "y_label": "loss",
        }
    },
    *(
        {
            title: {
                "template": template,
                "x": x,
                "y": {str(evaluate.STAGE.output("curves") / csv): y},
                "x_label": x_label,
                "y_label": y_label,
            }
        }
        for title, template, csv, x, y, x_label, y_label in (
            ("ROC", "simple", "roc.csv", "fpr", "tpr", "false positive rate", "true positive rate"),
            ("Precision-recall", "simple", "pr.csv", "recall", "precision", "recall", "precision"),
            ("Confusion matrix", "confusion", "confusion.csv", "predicted", "actual", "predicted", "actual"),
            (
                "Calibration",
                "linear",
                "calibration.csv",
                "mean_predicted",
                "fraction_positive",
                "mean predicted probability",
                "fraction of positives",
            ),
        )
    ),
    str(evaluate.STAGE.output("figures") / "decision_boundary.png"),
    str(evaluate.STAGE.output("figures") / "coefficients.png"),
]

DVC_YAML_HEADER = """\
# The map of the project, generated from the stage declarations (src/logitlab/stages/*.py, in order in
# src/logitlab/pipeline.py) by `make pipeline`; a test fails when the two differ, so edit the declarations.
# Each stage is `python -m logitlab.stages.<stage>`, reading only its own sections of params.yaml (composed
# from conf/; `dvc exp run -S key=value` recomposes it). Outputs are `persist: true`: DVC would delete them
# before a stage runs, and a failed run must leave the previous results in place; the stages replace each
# file atomically instead.
"""


# --------------------------------------------------------------------------------------------- dvc.yaml
class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as people write dvc.yaml."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dvc_yaml() -> str:
    """The text of dvc.yaml: every stage's command, deps (sources, then inputs), params, outs and metrics."""
    stages = {}
    for stage in STAGES:
        entry: dict[str, Any] = {
            "cmd": f"python -m {stage.module}",
            "deps": [*stage.sources, *(str(path) for path in stage.inputs.values())],
            "params": list(stage.params),
        }
        for kind, metric in (("metrics", True), ("outs", False)):
            outs = [
                {str(out.path): {"persist": True, **({} if out.cache else {"cache": False})}}
                for out in stage.outputs.values()
                if out.metric is metric
            ]
            if outs:
                entry[kind] = outs
        stages[stage.name] = entry
    body = yaml.dump({"stages": stages, "plots": PLOTS}, Dumper=_IndentedDumper, sort_keys=False, width=120)
    return DVC_YAML_HEADER + body


def write_dvc_yaml(path: str | os.PathLike[str]) -> None:
    from logitlab import io

    io.write_text(path, dvc_yaml())


# ------------------------------------------------------------------------------------------- settings
def settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every stage's validated settings, by stage name: a bad value anywhere fails before any stage runs."""
    return {stage.name: stage.settings(config.sections(params, stage.params)) for stage in STAGES}
