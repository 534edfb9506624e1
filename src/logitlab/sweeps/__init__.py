"""The sweep path behind `python -m logitlab.sweep` (the Hydra app, `logitlab.sweep`), one module per part:

- `parent`: Hydra's callbacks in the launching process: the sweep's MLflow parent run before the jobs, its
  summary after, and what the command's exit reports;
- `job`: one job inside its MLflow run (or untracked), any failure recorded, and each job's `job.json`;
- `executor`: `JobConfig` (a job's config, validated once) and the stages of one job in process, shared
  stages through a content-addressed cache;
- `trials`: a pruned Optuna search's job side: the job's trial, its fit's per-epoch reports to it;
- `state`: what crosses Hydra's callback boundary to `sweep.main` (the open parent, how the sweep ended);
- `summary`: the sweep table and the metric-vs-parameter plot of the parent run;
- `progress`: the progress bar.

MLflow calls live in `logitlab.tracking`; the stage table and dvc.yaml in `logitlab.pipeline`.
"""
