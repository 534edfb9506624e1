"""The model registry: a sweep's best model becomes the `champion` of `mlflow.registered_model_name` only when
it beats the current one: on the sweep metric, or with several objectives when the current one is not at least
as good on every objective."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from logitlab import config
from logitlab.tracking import selection
from logitlab.tracking.results import MODEL_ID_TAG
from logitlab.tracking.store import Tracker

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)


def promote_champion(tracker: Tracker, best: Run, sweep: config.SweepConfig, name: str) -> None:
    """Register the best child's model as `name`; move the `champion` alias only if it beats the current one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracker.client()
    value = best.data.metrics[sweep.metric]
    try:
        current = client.get_model_version_by_alias(name, "champion")
        champion = client.get_run(current.run_id) if current.run_id else None
    except MlflowException:
        champion = None
    if champion is not None and _kept(champion, best, sweep):
        champion_value = champion.data.metrics[sweep.metric]
        log.info("champion kept: %s=%.4f is not better than %.4f", sweep.metric, value, champion_value)
        return
    model_id = best.data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        log.info("best run %s has no logged model (mlflow.log_model=false): nothing to register", best.info.run_id)
        return
    version = mlflow.register_model(f"models:/{model_id}", name)
    client.set_registered_model_alias(name, "champion", version.version)
    client.set_model_version_tag(name, version.version, sweep.metric, str(value))
    log.info("registered %s version %s as champion (%s=%.4f)", name, version.version, sweep.metric, value)


def _kept(champion: Run, best: Run, sweep: config.SweepConfig) -> bool:
    """The current champion stays when it has every objective and is at least as good on each (one objective:
    as good or better)."""
    if not all(metric in champion.data.metrics for metric in sweep.metrics):
        return False
    return all(
        held <= new for held, new in zip(selection.costs(champion, sweep), selection.costs(best, sweep), strict=True)
    )
