"""logitlab's Hydra plugins: the default launcher (`hydra/launcher=local`, set in conf/config.yaml). Hydra
imports every module under `hydra_plugins` when it starts, so this imports logitlab only when it runs jobs."""
