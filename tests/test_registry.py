"""The champion alias when two sweeps promote at the same time (`registry.settle`), on a real SQLite store.

MLflow has no compare-and-set for an alias: each promotion compares with the champion it read, so the later
alias write wins even with the worse model. The promotion settles afterwards; these tests set up what a race
leaves (the worse model's alias write last) and check where the alias ends.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from logitlab import config
from logitlab.tracking import registry
from logitlab.tracking.store import Tracker

NAME = "logitlab-race"
SWEEP = config.sweep_config({"metric": "val_accuracy", "direction": "maximize"})


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("race", artifact_location=(tmp_path / "mlartifacts").as_uri())
    client.create_registered_model(NAME)
    return Tracker(uri, experiment_id, "race")


def version(tracker: Tracker, val_accuracy: float, tagged: bool = True) -> str:
    """A finished run with its metric, registered as a new version of NAME (tagged as `promote_champion` does)."""
    client = tracker.client()
    run = client.create_run(tracker.experiment_id)
    client.log_metric(run.info.run_id, "val_accuracy", val_accuracy)
    client.set_terminated(run.info.run_id)
    registered = client.create_model_version(NAME, f"runs:/{run.info.run_id}/model", run.info.run_id)
    if tagged:
        client.set_model_version_tag(NAME, registered.version, "val_accuracy", str(val_accuracy))
    return str(registered.version)


def champion(tracker: Tracker) -> str:
    return str(tracker.client().get_model_version_by_alias(NAME, "champion").version)


def set_champion(tracker: Tracker, number: str) -> None:
    tracker.client().set_registered_model_alias(NAME, "champion", number)


def test_the_better_of_two_concurrent_promotions_is_the_champion_whichever_wrote_last(tracker: Tracker) -> None:
    old = version(tracker, 0.80)
    set_champion(tracker, old)
    window_start = int(time.time() * 1000) - registry.SETTLE_WINDOW_MS
    better, worse = version(tracker, 0.90), version(tracker, 0.85)  # both read `old` as the champion
    set_champion(tracker, better)
    set_champion(tracker, worse)  # the worse one's alias write lands last
    registry.settle(tracker, NAME, int(old), window_start, SWEEP)
    assert champion(tracker) == better
    set_champion(tracker, better)  # the other order: settling changes nothing
    registry.settle(tracker, NAME, int(old), window_start, SWEEP)
    assert champion(tracker) == better


def test_settling_leaves_out_older_versions_untagged_ones_and_a_lone_promotion(tracker: Tracker) -> None:
    first = version(tracker, 0.80)
    version(tracker, 0.99)  # demoted: promoted once, then the user moved the alias back to `first`
    set_champion(tracker, first)
    time.sleep(0.01)
    window_start = int(time.time() * 1000)
    version(tracker, 0.95, tagged=False)  # registered by hand: not a promotion
    ours = version(tracker, 0.85)
    set_champion(tracker, ours)
    registry.settle(tracker, NAME, int(first), window_start, SWEEP)
    assert champion(tracker) == ours, "a version from before the window or one without the tag took the alias"


def test_with_no_champion_before_the_replay_starts_from_the_first_concurrent_version(tracker: Tracker) -> None:
    window_start = int(time.time() * 1000) - registry.SETTLE_WINDOW_MS
    better, worse = version(tracker, 0.90), version(tracker, 0.70)
    set_champion(tracker, worse)
    registry.settle(tracker, NAME, 0, window_start, SWEEP)
    assert champion(tracker) == better
