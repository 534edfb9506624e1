"""A pruned Optuna search, on the job's side: the sweeper writes each job its trial (`hand_over`), and the job
reports its fit's validation score to that trial every few epochs, stopping when the study's pruner says so
(`reporting`). The trial lives in the study's storage, so a job in another process (joblib, SLURM) reaches it
the same way as one run in the sweeper's process; optuna is imported only by a pruned search's jobs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from logitlab import io
from logitlab.errors import TrialPruned
from logitlab.model._monitor import EpochReporter, reporting

TRIALS_DIR = "optuna_trials"  # in the sweep's folder: <job number>.json
# A study in optuna's journal file (`journal:///<absolute path>`): what a pruned search with no storage set keeps
# its study in. A report and the pruner's look at the other trials cost 6 ms there, against 80 ms in a SQLite
# file (its commits), measured on the busy 2-core machine: 16 s per 2000-epoch trial reporting every 10 epochs.
JOURNAL = "journal:///"
# The trial's user attribute a pruned job sets, [epoch, value]: the sweeper then tells the trial PRUNED.
PRUNED_AT = "logitlab.pruned_at"


def hand_over(sweep_dir: Path, job_num: int, trial: Mapping[str, Any]) -> None:
    """What job `job_num` needs to find its trial: storage, study_name, trial_id, report_every, score
    ("loss" or "accuracy") and pruner (its config, which the job instantiates)."""
    io.write_json(sweep_dir / TRIALS_DIR / f"{job_num}.json", dict(trial))


def storage(url: str | None) -> Any:
    """What `optuna.create_study(storage=...)` takes for `url`: a journal file's storage, or the URL itself."""
    if url is None or not url.startswith(JOURNAL):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend("/" + url.removeprefix(JOURNAL).lstrip("/")))


@contextlib.contextmanager
def reporting_to_trial(sweep_dir: Path | None, job_num: int) -> Iterator[None]:
    """The job's fits report to its trial, when the sweeper handed one over; a pruned fit's `TrialPruned`
    leaves here after the trial records where it stopped (`PRUNED_AT`)."""
    path = sweep_dir / TRIALS_DIR / f"{job_num}.json" if sweep_dir is not None else None
    if path is None or not path.is_file():
        yield
        return
    import optuna
    from hydra.utils import instantiate

    spec = io.read_json(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=spec["study_name"],
        storage=storage(spec["storage"]),
        sampler=optuna.samplers.RandomSampler(),  # never asked: the sweeper samples
        pruner=instantiate(spec["pruner"]),
    )
    trial = optuna.trial.Trial(study, spec["trial_id"])

    def report(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        return trial.should_prune()

    try:
        with reporting(EpochReporter(int(spec["report_every"]), spec["score"], report)):
            yield
    except TrialPruned as pruned:
        trial.set_user_attr(PRUNED_AT, [pruned.step, pruned.value])
        raise
