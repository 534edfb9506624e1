"""logitlab's Optuna sweeper for Hydra (`hydra/sweeper=logitlab_optuna`), over optuna >= 4 through its public
ask-and-tell API only. Its config keys are those of hydra-optuna-sweeper, whose newest release still needs
optuna < 3: once it supports optuna >= 4, `override /hydra/sweeper: optuna` switches back. Hydra imports every
module here that does not start with `_` when it starts, so optuna is imported only when a sweep runs."""
