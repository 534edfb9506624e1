"""A test-only Hydra callback that raises in the hook it is told: how tests inject a failure at each callback
of a real sweep (`+hydra.callbacks.inject._target_=tests.failing_callback.FailingCallback
+hydra.callbacks.inject.hook=on_job_start`)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback

HOOKS = ("on_run_start", "on_multirun_start", "on_job_start", "on_job_end", "on_multirun_end")


class FailingCallback(Callback):
    def __init__(self, hook: str) -> None:
        assert hook in HOOKS, hook
        self.hook = hook

    def _fail_in(self, hook: str) -> None:
        if hook == self.hook:
            raise RuntimeError(f"injected failure in {hook}")

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._fail_in("on_run_start")

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._fail_in("on_multirun_start")

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self._fail_in("on_job_start")

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        self._fail_in("on_job_end")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self._fail_in("on_multirun_end")
