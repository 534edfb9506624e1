"""Every MLflow call of the project, one module per concern.

`store` connects to the tracking store; `lifecycle` opens runs that always end (FINISHED, FAILED or KILLED);
`results` logs what a run produced; `repro` records a `dvc repro`; `sweeps` makes a sweep's parent and
child runs; `selection` picks the best child; `registry` promotes it. mlflow is imported inside functions
only, so `mlflow.enabled=false` never imports it.
"""
