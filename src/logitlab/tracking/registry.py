"""The model registry: a sweep's best model becomes the `champion` of `mlflow.registered_model_name` only when
it beats the current one: on the sweep metric, or with several objectives when the current one is not at least
as good on every objective.

MLflow has no compare-and-set for an alias. Two sweeps finishing together each compare with the champion they
read, and the later alias write would win even with the worse model. So each promotion registers and tags its
version before it writes the alias, then settles: it replays, in registration order from the champion it read,
the promotions of the versions registered about when it ran (`SETTLE_WINDOW_MS` around it: versions from before,
which a user may have demoted by moving the alias back, stay out), and points the alias at the outcome. The last
writer sees every concurrent version, so the champion is the one the promotions would have given one after
another."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from logitlab import config
from logitlab.tracking import selection
from logitlab.tracking.results import MODEL_ID_TAG
from logitlab.tracking.store import Tracker

if TYPE_CHECKING:
    from mlflow.entities import Run

log = logging.getLogger(__name__)

# How long before this promotion's own read of the champion a concurrent one may have registered its version and
# still be writing the alias: register, tag and alias take well under a second; a minute leaves room for a busy
# server while keeping older versions (a demoted one among them) out of the replay.
SETTLE_WINDOW_MS = 60_000


def promote_champion(tracker: Tracker, best: Run, sweep: config.SweepConfig, name: str) -> None:
    """Register the best child's model as `name`; move the `champion` alias only if it beats the current one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = tracker.client()
    value = best.data.metrics[sweep.metric]
    read_at = time.monotonic()
    try:
        current = client.get_model_version_by_alias(name, "champion")
        champion = client.get_run(current.run_id) if current.run_id else None
        since = int(current.version)
    except MlflowException:
        champion, since = None, 0
    if champion is not None and _kept(champion, best, sweep):
        champion_value = champion.data.metrics[sweep.metric]
        log.info("champion kept: %s=%.4f is not better than %.4f", sweep.metric, value, champion_value)
        return
    model_id = best.data.tags.get(MODEL_ID_TAG)
    if model_id is None:
        log.info("best run %s has no logged model (mlflow.log_model=false): nothing to register", best.info.run_id)
        return
    version = mlflow.register_model(f"models:/{model_id}", name)
    client.set_model_version_tag(name, version.version, sweep.metric, str(value))  # before the alias: `settle`
    client.set_registered_model_alias(name, "champion", version.version)
    log.info("registered %s version %s as champion (%s=%.4f)", name, version.version, sweep.metric, value)
    read_ms = int(version.creation_timestamp) - int((time.monotonic() - read_at) * 1000)  # on the store's clock
    settle(tracker, name, since, read_ms - SETTLE_WINDOW_MS, sweep)


def settle(tracker: Tracker, name: str, since: int, window_start_ms: int, sweep: config.SweepConfig) -> None:
    """Point the `champion` alias where, starting from version `since` (0: none), the promotions of the versions
    registered after it from `window_start_ms` on (store time) and tagged with the sweep metric (as
    `promote_champion` tags them) would have put it one after another."""
    client = tracker.client()
    versions = {int(v.version): v for v in client.search_model_versions(f"name = '{name}'")}
    candidates = [
        version
        for number, version in sorted(versions.items())
        if number > since
        and version.run_id
        and sweep.metric in version.tags
        and int(version.creation_timestamp) >= window_start_ms
    ]
    if len(candidates) < 2:
        return  # only this promotion's own version: nothing was promoted alongside it
    held = versions.get(since)
    held_run = client.get_run(held.run_id) if held is not None and held.run_id else None
    for version in candidates:
        run = client.get_run(str(version.run_id))
        if held_run is None or not _kept(held_run, run, sweep):
            held, held_run = version, run
    assert held is not None
    if client.get_model_version_by_alias(name, "champion").version != held.version:
        client.set_registered_model_alias(name, "champion", held.version)
        log.info("champion settled on %s version %s: another sweep promoted at the same time", name, held.version)


def _kept(champion: Run, best: Run, sweep: config.SweepConfig) -> bool:
    """The current champion stays when it has every objective and is at least as good on each (one objective:
    as good or better)."""
    if not all(metric in champion.data.metrics for metric in sweep.metrics):
        return False
    return all(
        held <= new for held, new in zip(selection.costs(champion, sweep), selection.costs(best, sweep), strict=True)
    )
