"""What crosses Hydra's callback boundary, in one place.

Hydra runs the callbacks (`sweeps.parent`) inside `hydra.main` and hands nothing of them back, so the sweep of
this process leaves here what `sweep.main` needs afterwards: the parent run it has open and not yet ended
(ended KILLED on an interrupt, FAILED on an error that escaped the jobs) and how the sweep ended (its exit
status). The sweep's own sections, validated once when it starts, are kept with them for its summary, and so is
what the Optuna sweeper measured of its workers (the sweeper runs in this process, between the callbacks).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from logitlab import config

if TYPE_CHECKING:
    from logitlab.tracking.sweeps import Parent


@dataclass(frozen=True)
class SweepSections:
    """The launching config's sections the callbacks act on, validated once when the sweep starts."""

    sweep: config.SweepConfig
    mlflow: config.MlflowConfig


@dataclass(frozen=True)
class Counted:
    """The jobs' outcome (their latest attempts): finished, failed, the first failure's reason, and pruned (a
    pruned search's jobs its pruner stopped: neither finished nor failed)."""

    finished: int
    failed: int
    first_error: str
    pruned: int = 0


@dataclass(frozen=True)
class WorkerTime:
    """How busy an Optuna search kept its slots (`hydra.sweeper.n_jobs` trials in flight): the seconds a trial
    was in flight, summed over the trials, against the slots times the search's wall time."""

    slots: int
    busy_s: float
    wall_s: float

    @property
    def busy_fraction(self) -> float:
        return self.busy_s / (self.slots * self.wall_s) if self.wall_s > 0 else 0.0


@dataclass
class SweepState:
    sections: SweepSections | None = None
    sweep_dir: Path | None = None
    parent: Parent | None = None  # opened by this process and not ended yet
    counted: Counted | None = None  # set once the jobs have all returned
    lost: str | None = None  # the tracking server stopped answering: what to tell, with how to resume
    summary_error: str | None = None  # the parent's summary failed (it was ended FAILED with this reason)
    workers: WorkerTime | None = None  # an Optuna search's, set by the sweeper once its trials have returned

    def clear(self) -> None:
        """A sweep starts: nothing of an earlier one in this process carries over."""
        for field in fields(self):
            setattr(self, field.name, field.default)


# This process's sweep (one at a time).
STATE = SweepState()
